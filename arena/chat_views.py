"""Direct chat pages: one named model, turns, refine, download; and named comparisons."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST, require_safe
from pydantic import BaseModel, ValidationError

from arena import chat_services, limits, schemas
from arena.models import ChatImage, ChatTurn
from arena.visitors import limit_images, owner_of
from generation.models import Generation, ImageModel

Form = TypeVar("Form", bound=BaseModel)


def _parse(schema: type[Form], data: Any) -> Form:
    """The form's fields as typed values, or a ChatError naming the first bad field."""
    try:
        return schema.model_validate(data.dict())
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "form"
        raise chat_services.ChatError(field, f"{field}: {first['msg']}") from None


def _conversation(request: HttpRequest) -> Any:
    return chat_services.conversation_for(owner=owner_of(request), user=request.user)


def _turn_for(request: HttpRequest, turn_id: int) -> ChatTurn:
    """A turn of this person's conversation; anyone else's is a 404."""
    return get_object_or_404(
        ChatTurn.objects.select_related("model", "source"),
        pk=turn_id,
        conversation=_conversation(request),
    )


def _image_for(request: HttpRequest, generation_id: int) -> Generation:
    chat_image = get_object_or_404(
        ChatImage.objects.select_related("generation__model"),
        generation_id=generation_id,
        turn__conversation=_conversation(request),
    )
    return chat_image.generation


def _turns(request: HttpRequest) -> list[dict[str, Any]]:
    turns = _conversation(request).turns.select_related("model", "source").order_by("-pk")[:20]
    return [_turn_context(turn) for turn in turns]


def _turn_context(turn: ChatTurn) -> dict[str, Any]:
    states = chat_services.image_states(turn)
    return {
        "turn": turn,
        "images": states,
        "finished": all(s.status in {"done", "failed"} for s in states),
        "can_refine": chat_services.can_refine(turn.model),
        "settings_json": json.dumps(chat_services.settings_of(turn)),
    }


def _page(
    request: HttpRequest,
    *,
    form: dict[str, Any] | None = None,
    error: Any = None,
    status: int = 200,
) -> HttpResponse:
    models = chat_services.chat_models()
    context = {
        "models": [
            {
                "model": m,
                "latency_ms": chat_services.typical_latency_ms(m),
                "can_refine": chat_services.can_refine(m),
                "sizes": [f"{w}x{h}" for w, h in m.allowed_sizes()],
            }
            for m in models
        ],
        "form": form or {},
        "error": error,
        "turns": _turns(request),
        "max_images": chat_services.MAX_IMAGES_PER_TURN,
    }
    response = render(request, "arena/chat.html", context, status=status)
    if isinstance(error, limits.RateLimited):
        response["Retry-After"] = str(error.retry_after)
    return response


@require_safe
@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    form: dict[str, Any] = {}
    try:
        query = _parse(schemas.ChatPageQuery, request.GET)
    except chat_services.ChatError as exc:
        return _page(request, error=exc, status=400)
    if query.from_turn is not None:
        # "Edit and rerun": the form comes back filled with that turn's settings.
        turn = _turn_for(request, query.from_turn)
        form = chat_services.settings_of(turn) | {"seed": turn.seed}
    else:
        # Iterating: start from the last turn's model and prompt, with a fresh random seed.
        last = _conversation(request).turns.filter(kind=ChatTurn.Kind.GENERATE).last()
        if last is not None:
            form = chat_services.settings_of(last) | {"seed": ""}
    return _page(request, form=form)


def _chosen_seed(form: schemas.ChatSettingsIn) -> int | None:
    if form.seed is not None:
        return form.seed
    if form.seed_mode == "fixed":
        raise chat_services.ChatError("seed", "Type a seed, or choose a random one.")
    return None


@require_POST
def start_turn(request: HttpRequest) -> HttpResponse:
    data = request.POST
    try:
        form = _parse(schemas.ChatSettingsIn, data)
        model = ImageModel.objects.enabled().filter(key=form.model).first()
        if model is None:
            raise chat_services.ChatError("model", "Pick one of the listed models.")
        settings = chat_services.check_settings(
            model=model,
            prompt=form.prompt,
            negative_prompt=form.negative_prompt,
            # A typed seed is always used, whichever seed option is ticked (the page says so);
            # "fixed" with an empty box is refused rather than silently drawn.
            seed=_chosen_seed(form),
            steps=form.steps,
            guidance=form.guidance,
            size=form.size,
            count=form.count,
        )
        limit_images(request)
        turn = chat_services.start_turn(conversation=_conversation(request), settings=settings)
    except (chat_services.ChatError, limits.RateLimited) as exc:
        status = 429 if isinstance(exc, limits.RateLimited) else 400
        return _page(request, form=data.dict(), error=exc, status=status)
    return redirect(reverse("arena:chat") + f"#turn-{turn.pk}")


@require_POST
def run_again(request: HttpRequest, turn_id: int) -> HttpResponse:
    turn = _turn_for(request, turn_id)
    try:
        form = _parse(schemas.RunAgainIn, request.POST)
        limit_images(request)
        again = chat_services.run_again(turn=turn, new_seed=form.seed == "new")
    except (chat_services.ChatError, limits.RateLimited) as exc:
        status = 429 if isinstance(exc, limits.RateLimited) else 400
        return _page(request, error=exc, status=status)
    return redirect(reverse("arena:chat") + f"#turn-{again.pk}")


@require_POST
def refine(request: HttpRequest, generation_id: int) -> HttpResponse:
    source = _image_for(request, generation_id)
    try:
        form = _parse(schemas.RefineIn, request.POST)
        chat_services.check_refinable(source)
        settings = chat_services.check_settings(
            model=source.model,
            prompt=form.prompt,
            # The negative prompt carries over unless the refine form sends its own.
            negative_prompt=source.negative_prompt
            if form.negative_prompt is None
            else form.negative_prompt,
            seed=source.seed,
            steps=source.steps,
            guidance=source.guidance,
            size=f"{source.width}x{source.height}",
        )
        limit_images(request)
        turn = chat_services.start_turn(
            conversation=_conversation(request),
            settings=settings,
            source=source,
            strength=form.strength,
        )
    except (chat_services.ChatError, limits.RateLimited) as exc:
        status = 429 if isinstance(exc, limits.RateLimited) else 400
        return _page(request, error=exc, status=status)
    return redirect(reverse("arena:chat") + f"#turn-{turn.pk}")


@require_safe
def turn_panel(request: HttpRequest, turn_id: int) -> HttpResponse:
    context = _turn_context(_turn_for(request, turn_id))
    return render(request, "arena/_chat_turn.html", context)


@require_safe
def turn_settings(request: HttpRequest, turn_id: int) -> JsonResponse:
    return JsonResponse(chat_services.settings_of(_turn_for(request, turn_id)))


@require_safe
def download(request: HttpRequest, generation_id: int) -> HttpResponseBase:
    generation = _image_for(request, generation_id)
    if generation.status != Generation.Status.DONE:
        return HttpResponse("The image is not ready yet.", status=409)
    return FileResponse(
        generation.image.open("rb"),
        as_attachment=True,
        filename=chat_services.download_name(generation),
        content_type="image/png",
    )


@require_safe
@ensure_csrf_cookie
def compare_page(request: HttpRequest) -> HttpResponse:
    return render(
        request, "arena/compare.html", {"models": chat_services.chat_models(), "form": {}}
    )


@require_POST
def start_compare(request: HttpRequest) -> HttpResponse:
    data = request.POST
    enabled = ImageModel.objects.enabled()
    try:
        form = _parse(schemas.CompareIn, data)
        left = enabled.filter(key=form.left).first()
        right = enabled.filter(key=form.right).first()
        if left is None or right is None:
            raise chat_services.ChatError("left", "Pick two of the listed models.")
        limit_images(request)
        battle = chat_services.create_named_battle(
            left=left,
            right=right,
            prompt_text=form.prompt,
            owner=owner_of(request),
            seed=form.seed,
        )
    except (chat_services.ChatError, limits.RateLimited) as exc:
        status = 429 if isinstance(exc, limits.RateLimited) else 400
        context = {"models": chat_services.chat_models(), "form": data.dict(), "error": exc}
        return render(request, "arena/compare.html", context, status=status)
    return redirect("arena:battle", battle_id=battle.public_id)
