"""Input checked at the edge, one place per kind of input, before any view sees it.

What PostgreSQL or Python cannot take must not get as far as a query or a parser's recursion:
- NUL characters (PostgreSQL text refuses them) in the path, the query string and form fields:
  cratos.middleware.EdgeInputMiddleware, with `has_nul`;
- JSON bodies nested deeper than any request needs (json raises RecursionError), or with NUL in
  a key or a string: cratos.parsers.JSONParser, the API's parser, with `json_refusal`;
- numbers that name a row (ids, votes): `parse_id`, which takes ASCII digits within bigint only
  (`str.isdigit` also takes "²", which int() refuses); the rows an admin action is given, which
  the admin would filter by unchecked: EdgeInputMiddleware again.
A refusal is 400 (404 for a path) in the usual format: JSON for the API, the error page else.
"""

from django.utils.translation import gettext_lazy as _

NUL = "\x00"
# The deepest JSON any endpoint reads is a list of objects holding lists: far below this.
MAX_JSON_DEPTH = 32
# PostgreSQL's bigint, the type of every id column.
MAX_ID = 2**63 - 1

NUL_REFUSED = _("The request contains a NUL character, which no field accepts.")
NOT_ROWS = _("The selected rows are not valid; reload the page.")
TOO_DEEP = _("The JSON body is nested too deeply.")


def parse_id(text: str) -> int | None:
    """The row id (or node id) `text` names; None when it names none."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def has_nul(query) -> bool:
    """Whether a QueryDict (a query string, form fields) holds a NUL in a name or a value."""
    return any(NUL in key or any(NUL in value for value in values) for key, values in query.lists())


def json_refusal(data) -> str | None:
    """Why parsed JSON is refused (too deep, a NUL: where, as "approvers.x[2]"), or None.
    Iterative: it must not recurse."""
    pending = [(data, 1, "")]
    while pending:
        value, depth, path = pending.pop()
        if isinstance(value, str):
            if NUL in value:
                return f"{path}: {NUL_REFUSED}" if path else str(NUL_REFUSED)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return str(TOO_DEEP)
            if isinstance(value, list):
                items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
            elif any(NUL in key for key in value):
                return f"{path}: {NUL_REFUSED}" if path else str(NUL_REFUSED)
            else:
                items = ((f"{path}.{key}" if path else key, item) for key, item in value.items())
            pending.extend((item, depth + 1, where) for where, item in items)
    return None
