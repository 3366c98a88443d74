"""The API's JSON parser: DRF's, refusing what cratos.validation refuses with 400, not a 500."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from cratos.validation import TOO_DEEP, json_refusal


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(TOO_DEEP) from exc
        refusal = json_refusal(data)
        if refusal is not None:
            raise ParseError(refusal)
        return data
