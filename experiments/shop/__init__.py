"""The demo shop at ``/shop/``: a product grid ranked by the visitor's arm."""
