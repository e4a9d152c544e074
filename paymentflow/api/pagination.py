"""`?page=1&limit=20` paging shared by every list: `{data, meta: {total, page, limit, totalPages}}`.

A page past the end is an empty `data`, not an error; a non-numeric, non-positive or
empty (`?page=`) `page`/`limit` is a 400; `limit` above the cap is clamped to it.
"""

import math
from dataclasses import dataclass

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageRequest:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def _positive_int(request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: [f"{name} must be a positive integer."]}) from None
    if value < 1:
        raise ValidationError({name: [f"{name} must be a positive integer."]})
    return value


def page_request_from(request) -> PageRequest:
    page = _positive_int(request, "page", 1)
    limit = min(_positive_int(request, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    # Bound the offset so a huge page number cannot ask the database for a silly OFFSET.
    page = min(page, 10_000_000)
    return PageRequest(page=page, limit=limit)


def total_pages(total: int, limit: int) -> int:
    return math.ceil(total / limit) if total else 0


class PagePagination(BasePagination):
    def paginate_queryset(self, queryset, request, view=None):
        self.page_request = page_request_from(request)
        self.total = queryset.count()
        start = self.page_request.offset
        if start >= self.total:
            return []
        return list(queryset[start : start + self.page_request.limit])

    def get_paginated_response(self, data):
        return Response({"data": data, "meta": self.meta()})

    def meta(self) -> dict:
        return {
            "total": self.total,
            "page": self.page_request.page,
            "limit": self.page_request.limit,
            "total_pages": total_pages(self.total, self.page_request.limit),
        }

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["data", "meta"],
            "properties": {
                "data": schema,
                "meta": {
                    "type": "object",
                    "required": ["total", "page", "limit", "totalPages"],
                    "properties": {
                        "total": {"type": "integer", "minimum": 0},
                        "page": {"type": "integer", "minimum": 1},
                        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                        "totalPages": {"type": "integer", "minimum": 0},
                    },
                },
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "page",
                "required": False,
                "in": "query",
                "description": "Page number, from 1.",
                "schema": {"type": "integer", "minimum": 1, "default": 1},
            },
            {
                "name": "limit",
                "required": False,
                "in": "query",
                # No `maximum`: a larger value is accepted and clamped, as the contract says.
                "description": f"Items per page; above {MAX_LIMIT} counts as {MAX_LIMIT}.",
                "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT},
            },
        ]
