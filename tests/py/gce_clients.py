#!/usr/bin/env python3
"""Talk to a GCE metadata server with Google's REAL Python client, google-auth.

Run with the test venv (google-auth, requests, cryptography, PyJWT):

    GCE_METADATA_HOST=127.0.0.1:PORT GCE_METADATA_IP=127.0.0.1:PORT \
    ERSATZ_GCE_EXPECT='{"project_id": "...", "email": "...", "token": "...",
                        "audience": "https://..."}' \
        .venv/bin/python tests/py/gce_clients.py

ERSATZ_GCE_EXPECT may also hold "certs_url" (default
http://$GCE_METADATA_HOST/oauth2/v1/certs, where the listener serves the
key ids and PEM certificates ID tokens are checked against).

What it checks, each through google-auth's own code paths:
  * google.auth.compute_engine._metadata.ping(request) is True (GET / on
    GCE_METADATA_IP: a 200 carrying Metadata-Flavor: Google);
  * google.auth.default() picks compute_engine.Credentials and reads the
    project id from project/project-id;
  * compute_engine.Credentials().refresh(request) reads
    instance/service-accounts/default/?recursive=true, then .../token: the
    configured token, its email, and an expiry between 5 and 61 minutes;
    .universe_domain reads universe/universe-domain;
  * IDTokenCredentials(request, target_audience=A,
    use_metadata_identity_endpoint=True).refresh(request) gets a JWT from
    .../identity?audience=A&format=full, and
    google.oauth2.id_token.verify_token(jwt, request, audience=A,
    certs_url=...) verifies its RS256 signature and claims.

Prints one JSON line and exits 0; on any mismatch prints
"gce_clients: FAIL: ..." on stderr and exits 1 (2 for usage problems).
google-auth reads GCE_METADATA_HOST and GCE_METADATA_IP when it is imported,
so they are checked and the environment is cleaned before the import.
"""

import datetime
import json
import os
import sys
import tempfile


def die(msg, code=1):
    print("gce_clients: FAIL: %s" % msg, file=sys.stderr)
    sys.exit(code)


def check(what, got, want):
    if got != want:
        die("%s: got %r, want %r" % (what, got, want))


def read_env():
    host = os.environ.get("GCE_METADATA_HOST")
    if not host or not os.environ.get("GCE_METADATA_IP"):
        die("set GCE_METADATA_HOST and GCE_METADATA_IP to the listener's host:port", 2)
    try:
        expect = json.loads(os.environ["ERSATZ_GCE_EXPECT"])
    except (KeyError, ValueError) as e:
        die("ERSATZ_GCE_EXPECT must be a JSON object (%s)" % e, 2)
    missing = [k for k in ("project_id", "email", "token", "audience") if k not in expect]
    if missing:
        die("ERSATZ_GCE_EXPECT lacks %s" % missing, 2)
    expect.setdefault("certs_url", "http://%s/oauth2/v1/certs" % host)
    return expect


def isolate_from_this_machine():
    """Anything that would let google.auth.default() find credentials or a
    project other than the metadata server's, or change how it talks to it."""
    for name in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "GCLOUD_PROJECT",
        "GOOGLE_CLOUD_QUOTA_PROJECT",
        "GOOGLE_API_CERTIFICATE_CONFIG",
        "GOOGLE_API_USE_CLIENT_CERTIFICATE",
        "GCE_METADATA_MTLS_MODE",
        "GCE_METADATA_ROOT",
        "NO_GCE_CHECK",
        "SERVER_SOFTWARE",
        "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED",
    ):
        os.environ.pop(name, None)
    # No gcloud application-default credentials from this user's home.
    os.environ["CLOUDSDK_CONFIG"] = tempfile.mkdtemp(prefix="gce-clients-gcloud-")


def check_default(google_auth, compute_engine, expect):
    credentials, project = google_auth.default()
    if not isinstance(credentials, compute_engine.Credentials):
        die("google.auth.default() gave %s, not compute_engine.Credentials" % type(credentials).__name__)
    check("google.auth.default() project", project, expect["project_id"])
    return type(credentials).__module__ + "." + type(credentials).__name__


def check_access_token(compute_engine, request, expect):
    credentials = compute_engine.Credentials()
    credentials.refresh(request)
    check("access token", credentials.token, expect["token"])
    check("service account email", credentials.service_account_email, expect["email"])
    left = (credentials.expiry - datetime.datetime.utcnow()).total_seconds()
    if not 5 * 60 - 5 <= left <= 61 * 60:
        die("access token expiry is %.0f s away, not between 5 and 61 minutes" % left)
    return {
        "token": credentials.token,
        "email": credentials.service_account_email,
        "scopes": credentials.scopes,
        "expires_in_seconds": round(left),
        "universe_domain": credentials.universe_domain,
    }


def check_id_token(compute_engine, id_token, request, expect):
    audience = expect["audience"]
    credentials = compute_engine.IDTokenCredentials(
        request, target_audience=audience, use_metadata_identity_endpoint=True
    )
    credentials.refresh(request)
    claims = id_token.verify_token(credentials.token, request, audience=audience, certs_url=expect["certs_url"])
    check("ID token aud", claims.get("aud"), audience)
    check("ID token email", claims.get("email"), expect["email"])
    check("ID token email_verified", claims.get("email_verified"), True)
    check("ID token iss", claims.get("iss"), "https://accounts.google.com")
    gce = (claims.get("google") or {}).get("compute_engine") or {}
    check("ID token google.compute_engine.project_id", gce.get("project_id"), expect["project_id"])
    if claims.get("exp", 0) - claims.get("iat", 0) != 3600:
        die("ID token lives %r s, not 3600" % (claims.get("exp", 0) - claims.get("iat", 0)))
    return claims


def main():
    expect = read_env()
    isolate_from_this_machine()
    try:
        import google.auth
        import google.auth.transport.requests
        from google.auth import compute_engine
        from google.auth.compute_engine import _metadata
        from google.oauth2 import id_token
    except ImportError as e:
        die("cannot import google-auth (%s); run with the test venv's python (%s)" % (e, sys.executable), 2)

    request = google.auth.transport.requests.Request()
    result = {"ok": True}
    try:
        result["ping"] = _metadata.ping(request)
        check("_metadata.ping()", result["ping"], True)
        result["default_credentials"] = check_default(google.auth, compute_engine, expect)
        result["project_id"] = expect["project_id"]
        result["access_token"] = check_access_token(compute_engine, request, expect)
        check("universe domain", result["access_token"]["universe_domain"], "googleapis.com")
        result["id_token_claims"] = check_id_token(compute_engine, id_token, request, expect)
    except SystemExit:
        raise
    except Exception as e:  # anything google-auth raised is the failure to report
        die("%s: %s" % (type(e).__name__, e))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
