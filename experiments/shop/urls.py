from django.urls import path

from experiments.shop import views

app_name = "shop"

urlpatterns = [
    path("shop/", views.shop_home, name="home"),
    path("shop/item/", views.shop_item, name="item"),
    path("shop/event", views.shop_event, name="event"),
]
