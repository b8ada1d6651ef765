"""Access tokens: every way a token can be bad gets the same 401; key rotation; asymmetric keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import delete, update

from postkit import PostKit, User
from postkit.security import key_id

INVALID_TOKEN = {"detail": "Invalid or expired token", "code": "INVALID_TOKEN"}
OTHER_SECRET = "another-secret-key-that-is-long-enough-987654321"


@dataclass
class Context:
    """A logged-in user's real token, taken apart so cases can rebuild it with one flaw."""

    client: Any
    user: Any
    claims: dict[str, Any]
    header: dict[str, Any]
    secret: str

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        algorithm: str = "HS256",
        header: dict[str, Any] | None = None,
    ) -> str:
        return jwt.encode(
            self.claims if claims is None else claims,
            self.secret if key is None else key,
            algorithm=algorithm,
            headers=self.header if header is None else header,
        )

    def with_claims(self, **changes: Any) -> str:
        return self.sign({**self.claims, **changes})

    def without(self, name: str) -> str:
        return self.sign({k: v for k, v in self.claims.items() if k != name})


async def _context(client, new_user) -> Context:
    user = await new_user(client)
    return Context(
        client=client,
        user=user,
        claims=jwt.decode(user.access_token, options={"verify_signature": False}),
        header=jwt.get_unverified_header(user.access_token),
        secret=client.kit.settings.secret_key.get_secret_value(),
    )


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _raw_hs256(header: dict[str, Any], claims: dict[str, Any], secret: str) -> str:
    """Sign by hand what PyJWT refuses to produce (a header it considers invalid)."""
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def _tampered_payload(ctx: Context) -> str:
    header, _, signature = ctx.user.access_token.split(".")
    return f"{header}.{_b64({**ctx.claims, 'sub': str(ctx.user.id + 1)})}.{signature}"


def _tampered_signature(ctx: Context) -> str:
    token = ctx.user.access_token
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def _alg_none(ctx: Context) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': ctx.header['kid']})}.{_b64(ctx.claims)}."


async def _deleted_user(ctx: Context) -> str:
    async with ctx.client.kit.db.sessionmaker() as session:
        await session.execute(delete(User).where(User.id == ctx.user.id))
        await session.commit()
    return ctx.user.access_token


async def _inactive_user(ctx: Context) -> str:
    async with ctx.client.kit.db.sessionmaker() as session:
        await session.execute(update(User).where(User.id == ctx.user.id).values(is_active=False))
        await session.commit()
    return ctx.user.access_token


async def _logged_out(ctx: Context) -> str:
    response = await ctx.client.post("/logout", headers=ctx.user.headers)
    assert response.status_code == 204
    return ctx.user.access_token


async def _logged_out_everywhere(ctx: Context) -> str:
    response = await ctx.client.post("/logout/all", headers=ctx.user.headers)
    assert response.status_code == 204
    return ctx.user.access_token


def _now() -> int:
    return int(time.time())


Case = Callable[[Context], "str | Awaitable[str]"]

BAD_TOKENS: dict[str, Case] = {
    "expired": lambda c: c.with_claims(iat=_now() - 3600, exp=_now() - 120),
    "issued in the future": lambda c: c.with_claims(iat=_now() + 3600, exp=_now() + 7200),
    "tampered payload": _tampered_payload,
    "tampered signature": _tampered_signature,
    "signed with another key": lambda c: c.sign(key=OTHER_SECRET),
    "another key named as the current one": lambda c: c.sign(
        key=OTHER_SECRET, header={"kid": key_id(c.secret)}
    ),
    "alg none": _alg_none,
    "other algorithm, same key": lambda c: c.sign(
        algorithm="HS512", header={"kid": c.header["kid"]}
    ),
    "unknown kid": lambda c: c.sign(header={"kid": "0123456789abcdef"}),
    "no kid": lambda c: c.sign(header={}),
    "kid not a string": lambda c: _raw_hs256({"alg": "HS256", "kid": 7}, c.claims, c.secret),
    **{f"missing {name}": (lambda c, n=name: c.without(n)) for name in ("exp", "iat", "sub")},
    **{f"missing {name}": (lambda c, n=name: c.without(n)) for name in ("iss", "aud", "jti")},
    **{f"missing {name}": (lambda c, n=name: c.without(n)) for name in ("sid", "ver")},
    "wrong issuer": lambda c: c.with_claims(iss="someone-else"),
    "wrong audience": lambda c: c.with_claims(aud="someone-else"),
    "sub not a number": lambda c: c.with_claims(sub="abc"),
    "sub a float": lambda c: c.with_claims(sub=f"{c.user.id}.0"),
    "sub with underscore": lambda c: c.with_claims(sub=f"{c.user.id}_0"),
    "sub with spaces": lambda c: c.with_claims(sub=f" {c.user.id}"),
    "sub zero": lambda c: c.with_claims(sub="0"),
    "sub negative": lambda c: c.with_claims(sub="-1"),
    "sub beyond 32 bits": lambda c: c.with_claims(sub="99999999999"),
    "sub an integer": lambda c: c.with_claims(sub=c.user.id),
    "sub of another user": lambda c: c.with_claims(sub=str(c.user.id + 1000)),
    "unknown session": lambda c: c.with_claims(sid=uuid.uuid4().hex),
    "sid not a string": lambda c: c.with_claims(sid=12),
    "stale token version": lambda c: c.with_claims(ver=c.claims["ver"] + 1),
    "ver a string": lambda c: c.with_claims(ver=str(c.claims["ver"])),
    "ver a boolean": lambda c: c.with_claims(ver=False),
    "jti not a string": lambda c: c.with_claims(jti=5),
    "malformed": lambda c: "not-a-token",
    "three garbage segments": lambda c: "abc.def.ghi",
    "header only": lambda c: c.user.access_token.split(".")[0],
    "overlong": lambda c: "a" * 9000,
    "deleted user": _deleted_user,
    "inactive user": _inactive_user,
    "logged out": _logged_out,
    "logged out everywhere": _logged_out_everywhere,
}


async def test_a_rebuilt_token_without_flaws_is_accepted(client, new_user):
    # The cases below rebuild the real token with one flaw each; without one it must work, or
    # they would prove nothing.
    ctx = await _context(client, new_user)
    rebuilt = [
        ctx.sign(),
        ctx.sign(header={"kid": ctx.header["kid"]}),
        _raw_hs256({"alg": "HS256", "kid": ctx.header["kid"]}, ctx.claims, ctx.secret),
    ]
    for token in rebuilt:
        response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert response.json()["id"] == ctx.user.id


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 case
@pytest.mark.parametrize("case", list(BAD_TOKENS), ids=list(BAD_TOKENS))
async def test_every_bad_token_gets_the_same_401(client, new_user, case):
    ctx = await _context(client, new_user)
    token = BAD_TOKENS[case](ctx)
    if not isinstance(token, str):
        token = await token
    for path in ("/users/me", f"/users/{ctx.user.id}"):
        response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (case, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == INVALID_TOKEN


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "bearer", "Token abc"])
async def test_a_missing_bearer_token_is_not_authenticated(client, header):
    response = await client.get("/users/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated", "code": "NOT_AUTHENTICATED"}


async def test_tokens_carry_the_required_claims(client, new_user):
    ctx = await _context(client, new_user)
    assert {"exp", "iat", "sub", "iss", "aud", "jti", "sid", "ver"} <= set(ctx.claims)
    assert ctx.claims["sub"] == str(ctx.user.id)
    assert ctx.claims["iss"] == ctx.claims["aud"] == "postkit"
    assert ctx.claims["exp"] - ctx.claims["iat"] == 15 * 60
    assert ctx.header == {"alg": "HS256", "typ": "JWT", "kid": key_id(ctx.secret)}


async def test_leeway_tolerates_small_clock_skew(client, new_user):
    ctx = await _context(client, new_user)
    slightly_expired = ctx.with_claims(exp=_now() - 5)
    response = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {slightly_expired}"}
    )
    assert response.status_code == 200


# --- Key rotation -------------------------------------------------------------------------------


async def test_previous_keys_verify_until_removed(make_client, new_user):
    old = await make_client()
    old_secret = old.kit.settings.secret_key.get_secret_value()
    user = await new_user(old)

    rotated = await make_client(secret_key=OTHER_SECRET, previous_secret_keys=[old_secret])
    assert (await rotated.get("/users/me", headers=user.headers)).status_code == 200
    # New tokens are signed with the new key and name it.
    fresh = (
        await rotated.post("/login", data={"username": user.email, "password": user.password})
    ).json()["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == key_id(OTHER_SECRET)
    assert (await rotated.get("/users/me", headers={"Authorization": f"Bearer {fresh}"})).is_success

    retired = await make_client(secret_key=OTHER_SECRET)
    response = await retired.get("/users/me", headers=user.headers)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
    assert (await retired.get("/users/me", headers={"Authorization": f"Bearer {fresh}"})).is_success


# --- Asymmetric keys ----------------------------------------------------------------------------


def _pem_pair(private_key: Any) -> tuple[str, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


KEY_MAKERS = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


@pytest.mark.parametrize("algorithm", list(KEY_MAKERS))
async def test_asymmetric_algorithms(make_client, new_user, algorithm):
    private, public = _pem_pair(KEY_MAKERS[algorithm]())
    client = await make_client(
        jwt_algorithm=algorithm, jwt_private_key=private, jwt_public_key=public
    )
    user = await new_user(client)
    header = jwt.get_unverified_header(user.access_token)
    assert header["alg"] == algorithm
    assert header["kid"] == key_id(public)
    assert (await client.get("/users/me", headers=user.headers)).status_code == 200
    refreshed = await client.post("/token/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 200

    # Key confusion: the public key used as an HMAC secret must not verify.
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    forged = jwt.encode(claims, "x" * 64, algorithm="HS256", headers={"kid": header["kid"]})
    response = await client.get("/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN

    # Rotation: a new pair, with the old public key kept as a previous key.
    new_private, new_public = _pem_pair(KEY_MAKERS[algorithm]())
    rotated = await make_client(
        jwt_algorithm=algorithm,
        jwt_private_key=new_private,
        jwt_public_key=new_public,
        previous_secret_keys=[public],
    )
    assert (await rotated.get("/users/me", headers=user.headers)).status_code == 200
    retired = await make_client(
        jwt_algorithm=algorithm, jwt_private_key=new_private, jwt_public_key=new_public
    )
    assert (await retired.get("/users/me", headers=user.headers)).status_code == 401


def test_mismatched_key_pair_is_refused_at_start(settings_factory):
    private, _ = _pem_pair(ec.generate_private_key(ec.SECP256R1()))
    _, other_public = _pem_pair(ec.generate_private_key(ec.SECP256R1()))
    settings = settings_factory(
        jwt_algorithm="ES256", jwt_private_key=private, jwt_public_key=other_public
    )
    with pytest.raises(ValueError, match="not a pair"):
        PostKit(settings)


def test_key_of_the_wrong_kind_is_refused_at_start(settings_factory):
    private, public = _pem_pair(ed25519.Ed25519PrivateKey.generate())
    settings = settings_factory(
        jwt_algorithm="ES256", jwt_private_key=private, jwt_public_key=public
    )
    with pytest.raises(ValueError, match="does not suit"):
        PostKit(settings)
