"""The service's request and response models. Responses are fixed; requests are built once per app
from its limits and the collection's embedding width, and the OpenAPI document is generated from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, Field, create_model

from .limits import Limits


class Result(BaseModel):
    id: int
    score: float
    key: str
    caption: str | None
    width: int
    height: int
    thumbnail: str
    duplicates: list[int]
    video: str | None = None  # a video's segment: the video (its key), where the segment starts and ends
    start: float | None = None  # (seconds), and where to play it from (HTTP Range requests honoured)
    end: float | None = None
    media: str | None = None


class SearchResults(BaseModel):
    query: Literal["text", "image", "embedding"]
    results: list[Result]


class ItemOut(BaseModel):
    id: int
    key: str
    caption: str | None
    width: int
    height: int
    video: str | None = None
    start: float | None = None
    end: float | None = None


class LabelProbability(BaseModel):
    label: str
    probability: float


class Classification(BaseModel):
    labels: list[LabelProbability]


class Embedding(BaseModel):
    embedding: list[float]
    dim: int


class Located(BaseModel):
    id: int
    text: str
    grid: list[int]  # rows, columns of `scores`
    scores: list[list[float]]  # cosine similarity of each cell of the whole image (squashed) with the text
    peak: float


class Health(BaseModel):
    status: str
    items: int
    dim: int
    index: str
    model: str
    captions: bool


@dataclass(frozen=True)
class RequestModels:
    """Each query as JSON (a text or an embedding) and as a multipart form (an uploaded image)."""

    search: type[BaseModel]
    search_form: type[BaseModel]
    embed: type[BaseModel]
    embed_form: type[BaseModel]
    locate: type[BaseModel]

    def all(self) -> tuple[type[BaseModel], ...]:
        return (self.search, self.search_form, self.embed, self.embed_form, self.locate)


def request_models(limits: Limits, dim: int) -> RequestModels:
    text = Annotated[str, Field(min_length=1, max_length=limits.max_text_chars)]
    number = Annotated[float, Field(allow_inf_nan=False)]
    k = Annotated[int, Field(ge=1, le=limits.max_k)]
    default_k = min(10, limits.max_k)
    image = Annotated[bytes, Field(description="the image: JPEG, PNG, WebP, GIF, BMP or TIFF")]
    return RequestModels(
        search=create_model(
            "SearchQuery",
            __doc__="Exactly one of `text` and `embedding`.",
            text=(text | None, None),
            embedding=(Annotated[list[number], Field(min_length=dim, max_length=dim)] | None, None),
            k=(k, default_k),
            fold_duplicates=(bool, False),
        ),
        search_form=create_model("SearchForm", image=(image, ...), k=(k, default_k), fold_duplicates=(bool, False)),
        embed=create_model("EmbedQuery", text=(text, ...)),
        embed_form=create_model("EmbedForm", image=(image, ...)),
        locate=create_model(
            "LocateQuery",
            __doc__="Where in item `id`'s image the text matches.",
            id=(Annotated[int, Field(ge=0)], ...),
            text=(text, ...),
        ),
    )


def request_body(json_model: str, form_model: str | None = None) -> dict:
    """A route's OpenAPI request body: the JSON model or the multipart model (if any), by reference."""
    kinds = (("application/json", json_model), ("multipart/form-data", form_model))
    content = {kind: {"schema": {"$ref": f"#/components/schemas/{name}"}} for kind, name in kinds if name}
    return {"requestBody": {"required": True, "content": content}}
