"""Fake token endpoints: Google OAuth 2.0 and the Microsoft identity platform v2.

Google (RFC 6749 as Google documents it): ``POST /token`` with ``grant_type`` =
``authorization_code`` or ``refresh_token``; errors ``invalid_grant`` (400, "Token has been
expired or revoked.") and ``invalid_client`` (401).

Microsoft: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (msal's tenant discovery)
and ``POST /{tenant}/oauth2/v2.0/token``. Errors carry ``error``, ``error_description``
("AADSTSnnnn: ..."), ``error_codes``, ``trace_id``, ``correlation_id`` like the real service:
AADSTS70008 (expired refresh token → invalid_grant), AADSTS7000222 (expired client secret →
invalid_client, 401), AADSTS50194 (a single-tenant app used via /common → invalid_request),
AADSTS90002 (unknown tenant, from discovery as 400). Refresh tokens rotate on every use.

Served over HTTPS (msal only accepts https authorities) with a throwaway self-signed
certificate; ``ca_file`` is what clients must trust.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from tests.fakes import FakeHttpServer, Request, Response
from tests.mailservers.tls import make_self_signed


@dataclass
class Grant:
    provider: str  # "google" | "microsoft"
    client_id: str
    email: str
    tenant: str = ""


@dataclass
class OAuthState:
    google_clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    # client_id -> (secret, home tenant); single-tenant apps must use their tenant.
    microsoft_apps: dict[str, tuple[str, str]] = field(default_factory=dict)
    expired_secrets: set[str] = field(default_factory=set)
    codes: dict[str, tuple[Grant, str]] = field(default_factory=dict)  # code -> (grant, redirect)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # -> (email, exp)
    token_requests: list[dict[str, str]] = field(default_factory=list)  # form + "path"
    token_scopes: dict[str, str] = field(default_factory=dict)  # access token -> granted scope
    # Scopes a user leaves unticked on the consent screen (Google's granular consent).
    unticked: dict[str, set[str]] = field(default_factory=dict)
    # service account email → (public key PEM, scopes domain-wide delegation allows)
    service_accounts: dict[str, tuple[bytes, set[str]]] = field(default_factory=dict)


def _jwt(claims: dict[str, object]) -> str:
    def enc(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}.sig"


class FakeOAuth:
    def __init__(self, workdir: Path) -> None:
        self.tls = make_self_signed(workdir)
        self.ca_file = str(self.tls.ca_path)
        self.state = OAuthState()
        self._seq = itertools.count(1)
        self.server = FakeHttpServer(self._handle, tls=self.tls.server_context())
        self.access_lifetime = 3600

    # -- set-up and inspection --------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    def add_google_client(self, client_id: str, secret: str) -> None:
        self.state.google_clients[client_id] = secret

    def add_microsoft_app(self, client_id: str, secret: str, tenant: str) -> None:
        self.state.microsoft_apps[client_id] = (secret, tenant)

    def issue_code(
        self, provider: str, client_id: str, email: str, redirect_uri: str, tenant: str = ""
    ) -> str:
        code = f"code-{secrets.token_hex(8)}"
        self.state.codes[code] = (Grant(provider, client_id, email, tenant), redirect_uri)
        return code

    def grant(
        self, provider: str, client_id: str, email: str, tenant: str = "", scope: str = ""
    ) -> dict[str, object]:
        """Tokens as if the admin had just connected the account (``scope``: what the
        access token carries, for resources that check it)."""
        g = Grant(provider, client_id, email, tenant)
        access = self._access(email)
        if scope:
            self.state.token_scopes[access] = scope
        return {
            "access_token": access,
            "refresh_token": self._refresh(g),
            "expires_at": time.time() + self.access_lifetime,
        }

    def revoke(self, email: str) -> None:
        """The user revoked access (or the refresh token expired): invalid_grant."""
        for rt in [k for k, g in self.state.refresh_tokens.items() if g.email == email]:
            del self.state.refresh_tokens[rt]
        self.expire_access_tokens(email)

    def expire_access_tokens(self, email: str | None = None) -> None:
        for at, (who, _exp) in list(self.state.access_tokens.items()):
            if email is None or who == email:
                self.state.access_tokens[at] = (who, 0.0)

    def who(self, authorization: str | None) -> str | None:
        """The mailbox a ``Bearer`` header grants, when the token is valid now."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        found = self.state.access_tokens.get(authorization[7:])
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def scopes(self, authorization: str | None) -> set[str]:
        """The scope names (last path segment, lower case) the bearer token was granted."""
        token = (authorization or "")[7:]
        granted = self.state.token_scopes.get(token, "")
        return {s.rsplit("/", 1)[-1].lower() for s in granted.split()}

    def close(self) -> None:
        self.server.close()

    # -- helpers ----------------------------------------------------------------------

    def _access(self, email: str) -> str:
        token = f"at-{next(self._seq)}-{secrets.token_hex(6)}"
        self.state.access_tokens[token] = (email, time.time() + self.access_lifetime)
        return token

    def _refresh(self, grant: Grant) -> str:
        token = f"rt-{next(self._seq)}-{secrets.token_hex(6)}"
        self.state.refresh_tokens[token] = grant
        return token

    # -- HTTP -------------------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        if req.method == "POST" and req.path == "/token":
            return self._google_token(req)
        parts = req.path.strip("/").split("/")
        if len(parts) >= 2:
            tenant = parts[0]
            if req.method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                return self._discovery(tenant)
            if req.method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
                return self._microsoft_token(req, tenant)
        return Response.json({"error": "not_found"}, 404)

    # Google ---------------------------------------------------------------------------

    def add_service_account(self, email: str, public_pem: bytes, delegated: set[str]) -> None:
        """A service account; ``delegated``: the scopes a super admin allowed it domain-wide."""
        self.state.service_accounts[email] = (public_pem, delegated)

    def _jwt_bearer(self, form: dict[str, str]) -> Response:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        def unb64(s: str) -> bytes:
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

        refused = Response.json(
            {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, 400
        )
        try:
            head, body, sig = form.get("assertion", "").split(".")
            claims = json.loads(unb64(body))
        except ValueError:
            return refused
        found = self.state.service_accounts.get(str(claims.get("iss")))
        if found is None:
            return refused
        key = serialization.load_pem_public_key(found[0])
        assert isinstance(key, rsa.RSAPublicKey)  # service accounts sign with RS256
        try:
            key.verify(unb64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return refused
        scopes = set(str(claims.get("scope") or "").split())
        subject = str(claims.get("sub") or "")
        if not subject or not scopes or not scopes <= found[1]:
            return Response.json(
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens "
                    "using this method, or client not authorized for any of the scopes "
                    "requested.",
                },
                401,
            )
        access = self._access(subject)
        self.state.token_scopes[access] = " ".join(sorted(scopes))
        return Response.json(
            {"access_token": access, "expires_in": self.access_lifetime, "token_type": "Bearer"}
        )

    def _google_token(self, req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.state.token_requests.append({**form, "path": req.path})
        if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_bearer(form)
        client_id = form.get("client_id", "")
        if self.state.google_clients.get(client_id) != form.get("client_secret"):
            return Response.json(
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
                401,
            )
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            found = self.state.codes.pop(form.get("code", ""), None)
            if (
                found is None
                or found[1] != form.get("redirect_uri")
                or found[0].client_id != client_id
            ):
                return Response.json(
                    {"error": "invalid_grant", "error_description": "Bad Request"}, 400
                )
            grant = found[0]
            return Response.json(
                {
                    "access_token": self._access(grant.email),
                    "expires_in": self.access_lifetime,
                    "refresh_token": self._refresh(grant),
                    "scope": " ".join(
                        s
                        for s in ("https://www.googleapis.com/auth/gmail.modify", "openid", "email")
                        if s not in self.state.unticked.get(grant.email, set())
                    ),
                    "token_type": "Bearer",
                    "id_token": _jwt(
                        {
                            "iss": "https://accounts.google.com",
                            "aud": client_id,
                            "email": grant.email,
                            "email_verified": True,
                            "exp": int(time.time()) + 3600,
                            "iat": int(time.time()),
                        }
                    ),
                }
            )
        if grant_type == "refresh_token":
            refreshed = self.state.refresh_tokens.get(form.get("refresh_token", ""))
            if refreshed is None or refreshed.client_id != client_id:
                return Response.json(
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                    400,
                )
            # Google keeps the refresh token: none in the answer.
            return Response.json(
                {
                    "access_token": self._access(refreshed.email),
                    "expires_in": self.access_lifetime,
                    "scope": "https://www.googleapis.com/auth/gmail.modify",
                    "token_type": "Bearer",
                }
            )
        return Response.json({"error": "unsupported_grant_type"}, 400)

    # Microsoft ------------------------------------------------------------------------

    def _aad_error(self, status: int, error: str, code: int, text: str) -> Response:
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        return Response.json(
            {
                "error": error,
                "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
                f"Correlation ID: {corr}\r\nTimestamp: 2024-01-01 00:00:00Z",
                "error_codes": [code],
                "timestamp": "2024-01-01 00:00:00Z",
                "trace_id": trace,
                "correlation_id": corr,
                "error_uri": f"https://{self.host}/error?code={code}",
            },
            status,
        )

    def _known_tenant(self, tenant: str) -> bool:
        return tenant in ("common", "organizations") or any(
            t == tenant for _s, t in self.state.microsoft_apps.values()
        )

    def _discovery(self, tenant: str) -> Response:
        if not self._known_tenant(tenant):
            return self._aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return Response.json(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{self.url}/{tenant}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
            }
        )

    def _microsoft_token(self, req: Request, tenant: str) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.state.token_requests.append({**form, "path": req.path})
        client_id = form.get("client_id", "")
        app = self.state.microsoft_apps.get(client_id)
        if app is None:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found.",
            )
        secret, home = app
        if tenant in ("common", "organizations") and home not in ("common", "organizations"):
            return self._aad_error(
                400,
                "invalid_request",
                50194,
                f"Application '{client_id}' is not configured as a multi-tenant application. "
                "Usage of the /common endpoint is not supported for such applications.",
            )
        if secret in self.state.expired_secrets:
            return self._aad_error(
                401,
                "invalid_client",
                7000222,
                "The provided client secret keys for app are expired.",
            )
        if form.get("client_secret") != secret:
            return self._aad_error(
                401, "invalid_client", 7000215, "Invalid client secret provided."
            )
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            # Application permissions: a token for the app itself (roles, no user).
            access = self._access(f"app:{client_id}")
            self.state.token_scopes[access] = "Mail.ReadWrite Mail.Send"
            return Response.json(
                {
                    "token_type": "Bearer",
                    "expires_in": self.access_lifetime,
                    "ext_expires_in": self.access_lifetime,
                    "access_token": access,
                }
            )
        if grant_type == "authorization_code":
            found = self.state.codes.pop(form.get("code", ""), None)
            if found is None or found[1] != form.get("redirect_uri"):
                return self._aad_error(
                    400, "invalid_grant", 70000, "The provided authorization code is invalid."
                )
            grant = found[0]
        elif grant_type == "refresh_token":
            old = form.get("refresh_token", "")
            grant_or_none = self.state.refresh_tokens.get(old)
            if grant_or_none is None:
                return self._aad_error(
                    400,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity.",
                )
            grant = grant_or_none
        else:
            return self._aad_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        scope = form.get("scope", "")
        body: dict[str, object] = {
            "token_type": "Bearer",
            "scope": " ".join(
                s for s in scope.split() if s not in ("openid", "profile", "offline_access")
            ),
            "expires_in": self.access_lifetime,
            "ext_expires_in": self.access_lifetime,
            "access_token": self._access(grant.email),
            "refresh_token": self._refresh(grant),  # rotated on every use
        }
        unticked = self.state.unticked.get(grant.email, set())
        body["scope"] = " ".join(s for s in str(body["scope"]).split() if s not in unticked)
        self.state.token_scopes[str(body["access_token"])] = str(body["scope"])
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, grant.email))
        tid = str(uuid.uuid5(uuid.NAMESPACE_URL, home))
        if form.get("client_info") == "1":
            info = json.dumps({"uid": oid, "utid": tid}).encode()
            body["client_info"] = base64.urlsafe_b64encode(info).rstrip(b"=").decode()
        if "openid" in scope.split():
            now = int(time.time())
            body["id_token"] = _jwt(
                {
                    "aud": client_id,
                    "iss": f"{self.url}/{home}/v2.0",
                    "iat": now,
                    "nbf": now,
                    "exp": now + 3600,
                    "preferred_username": grant.email,
                    "tid": tid,
                    "oid": oid,
                    "sub": f"sub-{oid}",
                    "ver": "2.0",
                }
            )
        return Response.json(body)
