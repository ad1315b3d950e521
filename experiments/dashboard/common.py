"""What every dashboard page that changes something shares: who may decide, and how a decision form is submitted."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from experiments.errors import ApplicationError
from experiments.services import decisions as decision_services


def can_decide(user) -> bool:
    return bool(user.is_authenticated and user.is_staff and user.has_perm(decision_services.PERMISSION))


def require_decider(request: HttpRequest) -> None:
    if not can_decide(request.user):
        raise PermissionDenied("Only staff with the promote_arm permission can change traffic.")


def form_submit(request: HttpRequest, form, call: Callable[[dict], str]) -> tuple[bool, int]:
    """``(done, status)`` of a decision form: a valid POST runs ``call(cleaned_data)``, which returns the message to
    flash; a refusal goes next to its field (or the whole form) with its status; an invalid form is a 400."""
    if request.method != "POST":
        return False, 200
    if not form.is_valid():
        return False, 400
    try:
        message = call(form.cleaned_data)
    except ApplicationError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return False, exc.status
    messages.success(request, message)
    return True, 200
