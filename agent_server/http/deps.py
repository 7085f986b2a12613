"""FastAPI dependencies: what the lifespan put on `app.state`, as `Annotated` aliases.

Routes read like prose (`engine: EngineDep`) and tests replace nothing: the app factory decides
what goes on the state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agent_server.core.engine import Engine
from agent_server.errors import Conflict, NotReady
from agent_server.http.admission import Admission
from agent_server.http.metrics import Metrics
from agent_server.settings import Settings
from agent_server.storage.document_sync import DocumentSync
from agent_server.storage.store import Store
from agent_server.webgpt.agent import WebGPT
from tools.retrieval import IndexState, Retrieve


def get_engine(request: Request) -> Engine:
    state = request.app.state
    if state.engine is None:
        raise NotReady(state.load_error or "the model is still loading")
    ready: Engine = state.engine
    return ready


def get_webgpt(request: Request) -> WebGPT:
    get_engine(request)  # WebGPT mode is ready when its model is
    webgpt: WebGPT = request.app.state.webgpt
    return webgpt


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_retrieve(request: Request) -> Retrieve:
    get_engine(request)  # ready first: 503 while the model (and its tools) load
    retrieve: Retrieve | None = request.app.state.retrieve
    if retrieve is None:
        raise Conflict("Retrieve is not enabled: AGENT_TOOLS leaves it out")
    return retrieve


def get_index_state(request: Request) -> IndexState | None:
    """What Retrieve's index holds now, for the documents list; None when Retrieve is off.
    While the model and its tools load, every document is still to be indexed."""
    state = request.app.state
    if state.engine is None:
        if state.load_error:
            return IndexState(building=False, error=state.load_error)
        return IndexState(building=True)
    retrieve: Retrieve | None = state.retrieve
    return None if retrieve is None else retrieve.state()


def get_documents(request: Request) -> DocumentSync:
    documents: DocumentSync | None = request.app.state.documents
    if documents is None:
        raise Conflict("uploads need a documents folder, and AGENT_DOCUMENTS names a file")
    return documents


EngineDep = Annotated[Engine, Depends(get_engine)]
WebGPTDep = Annotated[WebGPT, Depends(get_webgpt)]
RetrieveDep = Annotated[Retrieve, Depends(get_retrieve)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StoreDep = Annotated[Store, Depends(get_store)]
DocumentsDep = Annotated[DocumentSync, Depends(get_documents)]
