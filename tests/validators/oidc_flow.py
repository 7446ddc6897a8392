"""An independent OpenID Connect client (authlib) against Kexin.

usage: oidc_flow.py ISSUER ROOT.pem CERT.pem KEY.pem CLIENTS.json

CLIENTS.json: [{"client_id", "client_secret", "redirect_uri"}, ...] (two
systems). The official's browser is a requests session presenting the
certificate; authlib builds the requests, exchanges the code with PKCE and
validates the ID token against the JWKS. Prints one JSON object of findings.
"""
import base64
import json
import sys
from urllib.parse import parse_qs, urlparse

import requests
from authlib.integrations.requests_client import OAuth2Session
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.common.security import generate_token

issuer, root, cert, key, clients_file = sys.argv[1:6]
clients = json.load(open(clients_file))
out = {}

conf = requests.get(f"{issuer}/.well-known/openid-configuration", verify=root).json()
jwks = JsonWebKey.import_key_set(requests.get(conf["jwks_uri"], verify=root).json())
browser = requests.Session()
# Otherwise REQUESTS_CA_BUNDLE from the environment beats the session's trust.
browser.trust_env = False
browser.verify = root
browser.cert = (cert, key)


def start(client):
    session = OAuth2Session(client["client_id"], client["client_secret"], scope="openid profile",
                            redirect_uri=client["redirect_uri"], code_challenge_method="S256")
    session.trust_env = False
    session.verify = root
    verifier = generate_token(64)
    nonce = generate_token(20)
    uri, state = session.create_authorization_url(conf["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    return session, uri, verifier, nonce


def follow(uri):
    """The browser: GET the authorization URL; confirm sign-in if asked."""
    r = browser.get(uri, allow_redirects=False)
    if r.status_code == 200 and 'id="sign-in"' in r.text:
        form = {k: v[0] for k, v in parse_qs(urlparse(uri).query).items()}
        r = browser.post(conf["authorization_endpoint"], data=form, allow_redirects=False,
                         headers={"Origin": issuer})
        return r, True
    return r, False


def validate(id_token, client, nonce):
    claims = jwt.decode(id_token, jwks, claims_options={
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client["client_id"]},
        "nonce": {"essential": True, "value": nonce},
    })
    claims.validate()
    return claims


# 1. First system: sign in with the certificate, code + PKCE, ID token.
a = clients[0]
session, uri, verifier, nonce = start(a)
r, asked = follow(uri)
out["first_login_asked_to_sign_in"] = asked
location = r.headers["Location"]
token = session.fetch_token(conf["token_endpoint"], authorization_response=location, code_verifier=verifier)
claims = validate(token["id_token"], a, nonce)
out["sub"] = claims["sub"]
out["name"] = claims.get("name")
out["id_token_alg"] = json.loads(__import__("base64").urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))["alg"]
out["userinfo"] = session.get(conf["userinfo_endpoint"]).json()
# The access token says it is one (RFC 9068 typ at+jwt); the ID token is
# not a bearer credential, at userinfo or at introspection.
typ = lambda jwt: json.loads(base64.urlsafe_b64decode(jwt.split(".")[0] + "=="))["typ"]
out["token_types"] = [typ(token["access_token"]), typ(token["id_token"])]
out["userinfo_with_id_token"] = requests.get(conf["userinfo_endpoint"], verify=root, headers={
    "Authorization": "Bearer " + token["id_token"]}).status_code
out["id_token_active"] = requests.post(conf["introspection_endpoint"], verify=root, auth=(a["client_id"], a["client_secret"]),
                                       data={"token": token["id_token"]}).json()["active"]

# The same code again: refused.
code = parse_qs(urlparse(location).query)["code"][0]
again = requests.post(conf["token_endpoint"], verify=root, auth=(a["client_id"], a["client_secret"]), data={
    "grant_type": "authorization_code", "code": code, "redirect_uri": a["redirect_uri"], "code_verifier": verifier})
out["reused_code"] = again.json().get("error")

# Refresh rotation; the spent refresh token replayed revokes the family.
first_refresh = token["refresh_token"]
rotated = session.refresh_token(conf["token_endpoint"], refresh_token=first_refresh)
out["refresh_rotated"] = rotated["refresh_token"] != first_refresh
replay = requests.post(conf["token_endpoint"], verify=root, auth=(a["client_id"], a["client_secret"]),
                       data={"grant_type": "refresh_token", "refresh_token": first_refresh})
out["refresh_replayed"] = replay.json().get("error")
intro = requests.post(conf["introspection_endpoint"], verify=root, auth=(a["client_id"], a["client_secret"]),
                      data={"token": rotated["refresh_token"]}).json()
out["rotated_token_after_replay_active"] = intro["active"]
access_intro = requests.post(conf["introspection_endpoint"], verify=root, auth=(a["client_id"], a["client_secret"]),
                             data={"token": rotated["access_token"]}).json()
out["access_token_active"] = access_intro["active"]
requests.post(conf["revocation_endpoint"], verify=root, auth=(a["client_id"], a["client_secret"]),
              data={"token": rotated["access_token"]})
out["access_token_active_after_revocation"] = requests.post(
    conf["introspection_endpoint"], verify=root, auth=(a["client_id"], a["client_secret"]),
    data={"token": rotated["access_token"]}).json()["active"]

# 2. Second system: single sign-on, no sign-in page.
b = clients[1]
session_b, uri_b, verifier_b, nonce_b = start(b)
r, asked = follow(uri_b)
out["second_system_asked_to_sign_in"] = asked
token_b = session_b.fetch_token(conf["token_endpoint"], authorization_response=r.headers["Location"], code_verifier=verifier_b)
out["same_account_on_second_system"] = validate(token_b["id_token"], b, nonce_b)["sub"] == out["sub"]

# A redirect URI that is not registered: the user sees an error, no redirect.
bad = browser.get(uri_b.replace("redirect_uri=", "redirect_uri=https%3A%2F%2Fevil.example%2Fcb%26x%3D"), allow_redirects=False)
out["wrong_redirect_status"] = bad.status_code
# No PKCE: refused to the client.
no_pkce = browser.get(uri_b.split("&code_challenge")[0], allow_redirects=False)
out["no_pkce_error"] = parse_qs(urlparse(no_pkce.headers.get("Location", "")).query).get("error", [None])[0]

# 3. Logout ends the session everywhere.
browser.get(conf["end_session_endpoint"], allow_redirects=False)
out["userinfo_after_logout"] = session_b.get(conf["userinfo_endpoint"]).status_code
session_c, uri_c, _, _ = start(a)
_, asked = follow(uri_c)
out["after_logout_asked_to_sign_in"] = asked
print(json.dumps(out, ensure_ascii=False))
