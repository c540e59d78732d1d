# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of tests/api: a fake Kubernetes API server over real HTTP (see fake_apiserver.py).

`apiserver` starts a fresh FakeApiServer per test and stops it afterwards. Its options come
from the test's `apiserver` marker, e.g.::

    @pytest.mark.apiserver(served_groups=ALL_GROUP_VERSIONS - {"storage.k8s.io/v1"})
    @pytest.mark.apiserver(workloads="never", create_pods=True)

The server object has .url, .api_client() (a ready kubernetes ApiClient) and
.write_kubeconfig(path) (a kubeconfig file for the `kubeconfig` connection option).
"""

import os

import pytest

from fake_apiserver import FakeApiServer


def pytest_configure(config):
    config.addinivalue_line("markers", "apiserver(**options): options of the fake API server (FakeApiServer's arguments)")


@pytest.fixture(autouse=True)
def _no_cluster_env(monkeypatch):
    """Keep the developer's cluster settings (K8S_AUTH_*, KUBECONFIG, in-cluster variables) out of the tests."""
    for name in list(os.environ):
        if name.startswith("K8S_AUTH_") or name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def apiserver(request):
    """A started FakeApiServer; options from the test's `apiserver` marker."""
    marker = request.node.get_closest_marker("apiserver")
    server = FakeApiServer(**(marker.kwargs if marker else {}))
    server.start()
    try:
        yield server
    finally:
        server.stop()
