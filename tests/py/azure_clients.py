#!/usr/bin/env python3
"""Microsoft's own client against ersatz's Azure flavour.

Run by the Rust end-to-end test with the repository's virtualenv python
(azure-identity, PyJWT, cryptography), against a live ersatz:

  AZURE_POD_IDENTITY_AUTHORITY_HOST=http://HOST:PORT   the Azure listener;
      azure-identity (and MSAL under it) sends its IMDS token request to
      this origin instead of http://169.254.169.254, with no probe first.
  ERSATZ_AZURE_EXPECT='{"resource": "https://management.azure.com",
                        "tenant": "GUID",
                        "system_client_id": "GUID",
                        "user_client_id": "GUID",
                        "jwks_url": "http://HOST:PORT/keys/jwks"}'

Checks that ManagedIdentityCredential():
  - gets a token for the system-assigned identity whose JWT verifies with
    ersatz's JWKS (RS256), with aud, iss, tid and appid as expected;
  - with client_id=USER, gets that user-assigned identity's token;
  - with an unknown client_id, fails with azure-identity's own error.

Prints one JSON line of results and exits 0; at the first mismatch prints
"azure_clients: FAIL: ..." on stderr and exits 1 (2 for usage problems).
"""

import json
import logging
import os
import sys
import uuid

# Only the variable set for this run may steer azure-identity: the runner's
# own Azure, MSI, identity or proxy settings would pick another credential
# or route the requests elsewhere. Cleared before azure-identity is imported.
AUTHORITY = "AZURE_POD_IDENTITY_AUTHORITY_HOST"
for name in list(os.environ):
    upper = name.upper()
    steering = upper.startswith(("AZURE_", "MSI_", "IDENTITY_")) or upper in (
        "IMDS_ENDPOINT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    )
    if steering and name != AUTHORITY:
        del os.environ[name]

import jwt  # noqa: E402  (after the environment is cleaned)
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential  # noqa: E402


# azure-identity logs each failed attempt as a warning; the expected
# failure (an unknown identity) would print one. Findings are reported here.
logging.getLogger("azure").addHandler(logging.NullHandler())


def fail(message):
    print(f"azure_clients: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def usage(message):
    print(f"azure_clients: {message}", file=sys.stderr)
    sys.exit(2)


def expectations():
    if not os.environ.get(AUTHORITY):
        usage(f"{AUTHORITY} is not set (the Azure listener's http://HOST:PORT)")
    try:
        expect = json.loads(os.environ["ERSATZ_AZURE_EXPECT"])
    except (KeyError, ValueError) as e:
        usage(f"ERSATZ_AZURE_EXPECT is missing or not JSON: {e}")
    keys = ("resource", "tenant", "system_client_id", "user_client_id", "jwks_url")
    missing = [k for k in keys if not expect.get(k)]
    if missing:
        usage(f"ERSATZ_AZURE_EXPECT lacks {', '.join(missing)}")
    return expect


def scope_of(resource):
    """The scope whose resource (azure-identity strips "/.default") is
    exactly `resource`, trailing slash and all."""
    return resource if resource.endswith("/") else resource + "/.default"


def verified_claims(token, expect, jwks):
    """The token's claims, once its signature, audience, issuer and times
    check out against ersatz's published keys."""
    try:
        key = jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=expect["resource"],
            issuer=f"https://sts.windows.net/{expect['tenant']}/",
            options={"require": ["exp", "iat", "nbf", "aud", "iss"]},
        )
    except jwt.PyJWTError as e:
        fail(f"the token does not verify with {expect['jwks_url']}: {type(e).__name__}: {e}")


def token_for(expect, jwks, client_id=None):
    credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    who = f"client_id={client_id}" if client_id else "the system identity"
    try:
        access = credential.get_token(scope_of(expect["resource"]))
    except Exception as e:  # any failure is the finding
        fail(f"get_token for {who} failed: {type(e).__name__}: {e}")
    claims = verified_claims(access.token, expect, jwks)
    wanted = client_id or expect["system_client_id"]
    for claim, value in (("appid", wanted), ("tid", expect["tenant"])):
        if claims.get(claim) != value:
            fail(f"{who}: claim {claim} is {claims.get(claim)!r}, expected {value!r}")
    header = jwt.get_unverified_header(access.token)
    return {
        "appid": claims["appid"],
        "oid": claims.get("oid"),
        "aud": claims["aud"],
        "iss": claims["iss"],
        "kid": header.get("kid"),
        "xms_mirid": claims.get("xms_mirid"),
        "expires_on": access.expires_on,
    }


def unknown_identity_fails(expect):
    stranger = str(uuid.uuid4())
    try:
        ManagedIdentityCredential(client_id=stranger).get_token(scope_of(expect["resource"]))
    except CredentialUnavailableError as e:
        if "Identity not found" not in str(e):
            fail(f"an unknown client_id failed, but not with IMDS's 'Identity not found': {e}")
        return f"{type(e).__name__}: {e}"
    except Exception as e:
        fail(f"an unknown client_id failed with {type(e).__name__}, not CredentialUnavailableError: {e}")
    fail(f"an unknown client_id ({stranger}) got a token")


def main():
    expect = expectations()
    jwks = jwt.PyJWKClient(expect["jwks_url"], cache_keys=False)
    system = token_for(expect, jwks)
    user = token_for(expect, jwks, expect["user_client_id"])
    if system["oid"] == user["oid"]:
        fail("the system and user-assigned identities have the same object id")
    results = {"system": system, "user": user, "unknown": unknown_identity_fails(expect)}
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
