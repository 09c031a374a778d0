"""Reading the workspace's POST forms: small url-encoded bodies, refused with a page saying why
when they are not (the forms have three fields and a pasted token at most)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request

MAX_BYTES = 16_384
MAX_FIELDS = 10


class BadForm(Exception):
    """A posted form the workspace does not read: answered by a page with `status`
    (pages.install's handler), never a 500."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _too_large() -> BadForm:
    return BadForm(413, "表单过大 Form too large",
                   f"A form on these pages is at most {MAX_BYTES} bytes; this one is larger. Reload the page and"
                   f" submit it again. 表单超过 {MAX_BYTES} 字节,请重新加载页面后再提交。")


async def read(request: Request) -> dict[str, str]:
    """The form's fields (the first value of each). Reads no further than MAX_BYTES: a larger
    body is refused from its Content-Length, or as soon as it passes the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BYTES:
            raise _too_large()
    try:
        # parse_qs raises ValueError past max_num_fields: that once escaped as a 500.
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise BadForm(400, "表单无效 Bad form",
                      f"A form on these pages has at most {MAX_FIELDS} fields; this one has more. Reload the page"
                      f" and submit it again. 表单字段超过 {MAX_FIELDS} 个,请重新加载页面后再提交。") from None
    return {name: values[0] for name, values in parsed.items()}
