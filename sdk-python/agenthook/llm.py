"""Chat completions through a model provider the operator configured in the host.

The host holds the API key; the manifest grants a provider, the models (globs) the plugin
may call and an hourly token budget::

    [grants]
    llm = { provider = "openai", models = ["gpt-4o-mini"], max_tokens_per_hour = 100000 }

A call is journaled like every effect: a retried attempt that makes the same call gets the
recorded answer instead of paying for a second one. ``Denied`` (no grant, a model it does
not list), ``Limited`` (budget spent, provider rate limiting), ``Invalid`` (the provider
refused the request) and ``Failed`` are raised as :class:`ToolError` s.

    answer = llm.chat("gpt-4o-mini", [llm.system("Be brief."), llm.user(alert_text)])
    summary = answer.content
"""

import json as _json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from wit_world.imports import llm as _wit

from ._errors import Permanent, call

_ROLES = {
    "system": _wit.Role.SYSTEM,
    "user": _wit.Role.USER,
    "assistant": _wit.Role.ASSISTANT,
    "tool": _wit.Role.TOOL,
}


@dataclass
class ToolCall:
    """A function call the model asked for: answer it with :func:`tool_result`."""

    id: str
    name: str
    arguments: str

    def args(self) -> Any:
        """The arguments, parsed from their JSON text."""
        return _json.loads(self.arguments)


@dataclass
class Answer:
    """The model's whole answer (the host turns streaming off)."""

    content: str
    tool_calls: List[ToolCall]
    finish_reason: str
    model: str
    input_tokens: int
    output_tokens: int

    def json(self) -> Any:
        """The content parsed as JSON (with a ``response_schema``); else :class:`Permanent`."""
        try:
            return _json.loads(self.content)
        except ValueError as err:
            raise Permanent(f"the model's answer is not JSON: {err}") from None


Message = Dict[str, Any]


def system(content: str) -> Message:
    return {"role": "system", "content": content}


def user(content: str) -> Message:
    return {"role": "user", "content": content}


def assistant(content: str, tool_calls: Optional[List[ToolCall]] = None) -> Message:
    return {"role": "assistant", "content": content, "tool_calls": tool_calls or []}


def tool_result(call_id: str, content: str) -> Message:
    return {"role": "tool", "content": content, "tool_call_id": call_id}


def _json_text(value: Union[str, Dict[str, Any]]) -> str:
    return value if isinstance(value, str) else _json.dumps(value)


def _message(m: Message) -> "_wit.Message":
    role = m.get("role", "user")
    if role not in _ROLES:
        raise ValueError(f"unknown role {role!r}: one of {sorted(_ROLES)}")
    return _wit.Message(
        role=_ROLES[role],
        content=str(m.get("content", "")),
        tool_call_id=m.get("tool_call_id"),
        tool_calls=[
            _wit.ToolCall(id=c.id, name=c.name, arguments=c.arguments)
            for c in m.get("tool_calls") or []
        ],
    )


def chat(
    model: str,
    messages: List[Message],
    *,
    max_tokens: Optional[int] = None,
    temperature: Optional[float] = None,
    tools: Optional[List[Dict[str, Any]]] = None,
    response_schema: Union[str, Dict[str, Any], None] = None,
) -> Answer:
    """Ask ``model`` to continue ``messages`` (dicts with ``role`` and ``content``; see
    :func:`system`, :func:`user`, :func:`assistant`, :func:`tool_result`). ``tools``: dicts
    with ``name``, ``description`` and ``parameters`` (a JSON Schema). With
    ``response_schema`` the content is JSON that follows it (:meth:`Answer.json`)."""
    request = _wit.Request(
        model=model,
        messages=[_message(m) for m in messages],
        max_tokens=max_tokens,
        temperature=temperature,
        tools=[
            _wit.ToolDefinition(
                name=t["name"],
                description=t.get("description", ""),
                parameters=_json_text(t.get("parameters", {"type": "object"})),
            )
            for t in tools or []
        ],
        response_schema=None if response_schema is None else _json_text(response_schema),
    )
    r = call(_wit.chat, request)
    return Answer(
        content=r.content,
        tool_calls=[ToolCall(c.id, c.name, c.arguments) for c in r.tool_calls],
        finish_reason=r.finish_reason,
        model=r.model,
        input_tokens=r.usage.input_tokens,
        output_tokens=r.usage.output_tokens,
    )


def ask(model: str, prompt: str, system_prompt: Optional[str] = None, **options: Any) -> str:
    """One question, the answer's text."""
    messages = ([system(system_prompt)] if system_prompt else []) + [user(prompt)]
    return chat(model, messages, **options).content
