"""Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template`, or `chat_template` of a
folder's tokenizer_config.json), rendered in jinja2's sandbox as transformers renders it (trim_blocks,
lstrip_blocks, add_generation_prompt on), then tokenized as transformers' apply_chat_template does
(no BOS added beyond what the template writes) with one difference: text inside a message that spells a
special token stays plain text, so a user cannot inject the template's markers."""
from __future__ import annotations

import re
from datetime import datetime

from ._core import Error

_SENTINEL = "\ue000{}\ue001"  # private-use characters around a message's index
_SENTINEL_RE = re.compile("\ue000(\\d+)\ue001")


def _environment():
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _checked(messages) -> list:
    if isinstance(messages, (str, bytes)) or not hasattr(messages, "__iter__"):
        raise Error("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise Error(f"message {i} must be a dict with a str 'role' and a str 'content', got {m!r}"[:300])
        out.append(m)
    if not out:
        raise Error("messages is empty")
    return out


def render(tokenizer, messages, contents=None) -> str:
    """The template's text for `messages`, with message i's content replaced by contents[i] if given."""
    if not tokenizer.chat_template:
        raise Error("this model has no chat template; write the prompt in its format and call generate()")
    from jinja2.exceptions import TemplateError
    if contents is not None:
        messages = [dict(m, content=c) for m, c in zip(messages, contents)]
    bos = tokenizer.token_text(tokenizer.bos_id) if tokenizer.bos_id >= 0 else ""
    eos = tokenizer.token_text(tokenizer.eos_ids[0]) if tokenizer.eos_ids else ""
    try:
        return _environment().from_string(tokenizer.chat_template).render(
            messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)
    except TemplateError as e:
        raise Error(f"the chat template failed: {e}") from None


def render_ids(tokenizer, messages) -> list:
    messages = _checked(messages)
    text = render(tokenizer, messages)
    if not any(tokenizer.has_special(tokenizer.encode(m["content"], add_bos=False)) for m in messages):
        return tokenizer.encode(text, add_bos=False)  # the common case: exactly transformers' ids
    # Some content spells a special token: tokenize the template's own text and the contents apart, the
    # contents with special tokens read as plain text.
    marked = render(tokenizer, messages, [_SENTINEL.format(i) for i in range(len(messages))])
    parts = _SENTINEL_RE.split(marked)
    if sorted(int(i) for i in parts[1::2]) != list(range(len(messages))):
        raise Error("the chat template rewrites message contents, so special-token text in them cannot be kept "
                    "plain; remove it from the messages")
    ids = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            ids += tokenizer.encode(part, add_bos=False) if part else []
        else:
            ids += tokenizer.encode(messages[int(part)]["content"], parse_special=False, add_bos=False)
    return ids
