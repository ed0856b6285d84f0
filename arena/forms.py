"""The page forms' fields, parsed before any of them reaches a service or the database.

Django's ``CharField`` refuses NUL characters, which PostgreSQL cannot store; the services
still judge what the text says (``arena.services.clean_prompt``).
"""

from __future__ import annotations

from django import forms

from arena.models import Vote

# What a page echoes back of a refused prompt; far above any accepted prompt.
ECHO_CHARS = 20_000


class PromptForm(forms.Form):
    prompt = forms.CharField(required=False, strip=False)


class PromptQuery(forms.Form):
    """The battle page's query: ``?draw=1`` draws a curated prompt, ``?prompt=`` fills the box
    (from direct chat's "use this prompt in a battle")."""

    draw = forms.CharField(required=False)
    prompt = forms.CharField(required=False, strip=False)


class VoteForm(forms.Form):
    choice = forms.ChoiceField(choices=Vote.Choice.choices)


def first_error(form: forms.Form) -> str:
    """The form's first error message, for a page that shows one."""
    for errors in form.errors.values():
        return str(errors[0])
    return ""
