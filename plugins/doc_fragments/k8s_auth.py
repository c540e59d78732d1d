# -*- coding: utf-8 -*-
# Copyright: kubestorage.enablement contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options with kubernetes.core's names and environment fallbacks, so the same
    # module_defaults (group/kubestorage.enablement.k8s or kubernetes.core's) and variables work.
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file. Also C(K8S_AUTH_KUBECONFIG).
      - Without it and without O(host), the in-cluster configuration is tried, then C(~/.kube/config).
    type: path
  context:
    description: The kubeconfig context to use. Also C(K8S_AUTH_CONTEXT).
    type: str
  host:
    description: The API server URL, for example C(https://10.0.0.10:6443). Also C(K8S_AUTH_HOST).
    type: str
  api_key:
    description: A bearer token. Also C(K8S_AUTH_API_KEY).
    type: str
  username:
    description: User name for HTTP basic auth. Also C(K8S_AUTH_USERNAME).
    type: str
  password:
    description: Password for HTTP basic auth. Also C(K8S_AUTH_PASSWORD).
    type: str
  validate_certs:
    description: Verify the API server's certificate. Also C(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description: CA certificate (full chain) to verify the API server with. Also C(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description: Client certificate to authenticate with. Also C(K8S_AUTH_CERT_FILE).
    type: path
    aliases: [cert_file]
  client_key:
    description: Key of O(client_cert). Also C(K8S_AUTH_KEY_FILE).
    type: path
    aliases: [key_file]
  proxy:
    description: HTTP proxy URL for the API connection. Also C(K8S_AUTH_PROXY).
    type: str
  no_proxy:
    description: Comma-separated hosts and networks that bypass O(proxy). Also C(K8S_AUTH_NO_PROXY).
    type: str
  proxy_headers:
    description: Headers for the proxy.
    type: dict
    suboptions:
      proxy_basic_auth:
        description: C(user:password) for proxy basic auth.
        type: str
      basic_auth:
        description: C(user:password) for basic auth.
        type: str
      user_agent:
        description: User agent string.
        type: str
  persist_config:
    description: Save refreshed tokens back to the kubeconfig file. Also C(K8S_AUTH_PERSIST_CONFIG).
    type: bool
  impersonate_user:
    description: User to impersonate. Also C(K8S_AUTH_IMPERSONATE_USER).
    type: str
  impersonate_groups:
    description: Groups to impersonate. Also C(K8S_AUTH_IMPERSONATE_GROUPS) (comma-separated).
    type: list
    elements: str
requirements:
  - kubernetes >= 24.2.0 (the Python client) on the host that runs the module
notes:
  - The modules talk to the API server only with the requests the work needs (no discovery). Writes are
    server-side apply with the field manager V(kubestorage.enablement).
"""
