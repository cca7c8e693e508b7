"""`GET /openapi.json` and a Swagger UI page at `GET /docs`, with every asset served from here.

The document is built once, at start, from the routes the gateway serves. Swagger UI's
files come from the flask-swagger-ui distribution (its `dist` folder); the page and the
script that starts it are ours, so the page needs no inline script and no other host.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import json
from collections.abc import Sequence
from pathlib import Path

from flask import Flask, Response, send_from_directory, url_for
from markupsafe import escape

from gateway.openapi import build_document
from gateway.proto_comments import load_proto_comments
from gateway.routes import Route

SWAGGER_UI_PACKAGE = "flask_swagger_ui"
DOCUMENT_PATH = "/openapi.json"
DOCS_PATH = "/docs"
# The page loads only what this gateway serves; Swagger UI styles some elements inline
# and draws a few icons as data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DESCRIPTION = (
    "Generated from the gRPC services' proto files: each operation is an RPC with a "
    "`google.api.http` annotation. JSON field names are the proto field names (snake_case). "
    "Request bodies must be `Content-Type: application/json`; unknown fields are refused. "
    "Errors are RFC 9457 `application/problem+json`."
)

_INIT_SCRIPT = """\
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    layout: "BaseLayout",
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
"""

_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{document}"></div>
  <script src="{bundle}"></script>
  <script src="{init}"></script>
</body>
</html>
"""


def swagger_ui_dist() -> Path:
    """The folder of Swagger UI's built files shipped by flask-swagger-ui."""
    return Path(str(importlib.resources.files(SWAGGER_UI_PACKAGE).joinpath("dist")))


def register_docs(app: Flask, routes: Sequence[Route]) -> None:
    """Serve the OpenAPI document of routes and the page that shows it (both public)."""
    title = "authgate API"

    # Made at the first request rather than at start: the field rules' text pattern scans
    # the whole code space, a cost each gateway worker's boot would pay for a document
    # few clients fetch.
    @functools.cache
    def document_json() -> str:
        document = build_document(
            routes,
            load_proto_comments(),
            title=title,
            version=importlib.metadata.version("authgate"),
            description=DESCRIPTION,
        )
        return json.dumps(document, indent=1)

    dist = swagger_ui_dist()

    def openapi_json() -> Response:
        return Response(document_json(), content_type="application/json")

    def docs_page() -> Response:
        page = _PAGE.format(
            title=escape(title),
            css=escape(url_for("docs_asset", name="swagger-ui.css")),
            icon=escape(url_for("docs_asset", name="favicon-32x32.png")),
            document=escape(url_for("openapi_json")),
            bundle=escape(url_for("docs_asset", name="swagger-ui-bundle.js")),
            init=escape(url_for("docs_init")),
        )
        response = Response(page, content_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response

    def docs_init() -> Response:
        return Response(_INIT_SCRIPT, content_type="text/javascript; charset=utf-8")

    def docs_asset(name: str) -> Response:
        return send_from_directory(dist, name)

    app.add_url_rule(DOCUMENT_PATH, endpoint="openapi_json", view_func=openapi_json)
    app.add_url_rule(DOCS_PATH, endpoint="docs", view_func=docs_page)
    app.add_url_rule(f"{DOCS_PATH}/init.js", endpoint="docs_init", view_func=docs_init)
    app.add_url_rule(f"{DOCS_PATH}/<path:name>", endpoint="docs_asset", view_func=docs_asset)
