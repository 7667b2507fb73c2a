"""Tests of scoreboard.auth: token checks (docs/api.md#tokens-and-roles), issuing, passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from scoreboard import auth, errors
from scoreboard.auth import Identity, Role, TokenCodec

SECRET = b"0123456789abcdef0123456789abcdef"
OTHER_SECRET = b"fedcba9876543210fedcba9876543210"
NOW = 1_800_000_000.0


# --- helpers -----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def crafted(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, so no library refuses to build it."""
    return f"{segment(header)}.{segment(claims)}.{b64url(signature)}"


def hs256_by_hand(claims: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """HS256 signed with any key, even one PyJWT would refuse (such as a public PEM)."""
    head = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{segment(head)}.{segment(claims)}"
    mac = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims at NOW; an override of None removes the claim."""
    base: dict[str, Any] = {"sub": "alice", "iat": int(NOW), "exp": int(NOW) + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def pem(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(secret=SECRET)


def assert_auth_failed(codec: TokenCodec, token: Any) -> errors.AuthFailed:
    with pytest.raises(errors.AuthFailed) as info:
        codec.decode(token, now=NOW)
    exc = info.value
    assert exc.code == "auth_failed" and exc.status == 401
    # Short and generic: never quotes the token.
    assert len(exc.detail) <= 40
    if isinstance(token, str) and token:
        assert token not in str(exc) and token not in exc.detail
    return exc


# --- issue and round trip ----------------------------------------------------------------------


def test_issue_decode_round_trip(codec: TokenCodec) -> None:
    token = codec.issue("alice", role=Role.ADMIN, name="Alice A.", now=NOW)
    assert codec.decode(token, now=NOW + 10) == Identity(
        sub="alice", role=Role.ADMIN, name="Alice A.", exp=NOW + 86400
    )


def test_issued_claims_and_header(codec: TokenCodec) -> None:
    token = codec.issue("bob", ttl=60, now=NOW + 0.7)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    body = jwt.decode(token, options={"verify_signature": False})
    assert body == {"sub": "bob", "role": "player", "iat": int(NOW), "exp": int(NOW) + 60}


def test_issue_uses_the_real_clock_by_default(codec: TokenCodec) -> None:
    identity = codec.decode(codec.issue("carol", role="server"))
    assert identity.sub == "carol" and identity.role is Role.SERVER and identity.name is None


def test_issue_with_issuer_and_audience_passes_own_checks() -> None:
    codec = TokenCodec(secret=SECRET, issuer="https://scores.example", audience="scoreboard")
    token = codec.issue("alice", now=NOW)
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["iss"] == "https://scores.example" and body["aud"] == "scoreboard"
    assert codec.decode(token, now=NOW).sub == "alice"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sub": "has space"}, "sub"),
        ({"sub": "x" * 65}, "sub"),
        ({"sub": ""}, "sub"),
        ({"sub": "alice", "role": "root"}, "role"),
        ({"sub": "alice", "name": "n" * 65}, "name"),
        ({"sub": "alice", "ttl": 0}, "ttl"),
    ],
)
def test_issue_refuses_what_decode_would_refuse(
    codec: TokenCodec, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        codec.issue(now=NOW, **kwargs)


# --- algorithms --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_rejected(codec: TokenCodec, alg: str) -> None:
    token = crafted({"alg": alg, "typ": "JWT"}, claims())
    assert token.endswith(".")
    assert_auth_failed(codec, token)


def test_alg_none_with_a_signature_copied_from_a_valid_token_rejected(codec: TokenCodec) -> None:
    signature = codec.issue("alice", now=NOW).rsplit(".", 1)[1]
    token = crafted({"alg": "none"}, claims()) + signature
    assert_auth_failed(codec, token)


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"alg": None}, {"alg": ["HS256"]}])
def test_missing_or_non_string_alg_rejected(codec: TokenCodec, header: dict[str, Any]) -> None:
    assert_auth_failed(codec, hs256_by_hand(claims(), SECRET, header=header))


def test_hs512_with_another_key_rejected(codec: TokenCodec) -> None:
    token = jwt.encode(claims(), OTHER_SECRET * 2, algorithm="HS512")
    assert_auth_failed(codec, token)


def test_hs512_even_with_our_secret_rejected(codec: TokenCodec) -> None:
    token = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    exc = assert_auth_failed(codec, token)
    assert exc.detail == "Token algorithm not allowed"


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_other_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_rs256_rejected_when_only_hs256_allowed(
    codec: TokenCodec, rsa_private: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(claims(), rsa_private, algorithm="RS256")
    assert_auth_failed(codec, token)


def test_wrong_secret_rejected(codec: TokenCodec) -> None:
    exc = assert_auth_failed(codec, jwt.encode(claims(), OTHER_SECRET, algorithm="HS256"))
    assert exc.detail == "Invalid token signature"


def test_tampered_payload_rejected(codec: TokenCodec) -> None:
    head, _, signature = codec.issue("alice", now=NOW).split(".")
    forged = f"{head}.{segment(claims(role='admin'))}.{signature}"
    assert_auth_failed(codec, forged)


# --- time claims -------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds_past", [30, 31, 3600])
def test_expired_beyond_leeway(codec: TokenCodec, seconds_past: int) -> None:
    token = jwt.encode(claims(exp=int(NOW) - seconds_past), SECRET, algorithm="HS256")
    with pytest.raises(errors.TokenExpired) as info:
        codec.decode(token, now=NOW)
    assert info.value.code == "token_expired" and info.value.detail == "Token expired"


@pytest.mark.parametrize("seconds_past", [0, 1, 29])
def test_expired_within_leeway_accepted(codec: TokenCodec, seconds_past: int) -> None:
    token = jwt.encode(claims(exp=int(NOW) - seconds_past), SECRET, algorithm="HS256")
    assert codec.decode(token, now=NOW).exp == NOW - seconds_past


def test_zero_leeway_expires_at_exp() -> None:
    codec = TokenCodec(secret=SECRET, leeway=0)
    token = jwt.encode(claims(exp=int(NOW), iat=int(NOW) - 60), SECRET, algorithm="HS256")
    assert codec.decode(token, now=NOW - 0.001).sub == "alice"
    with pytest.raises(errors.TokenExpired):
        codec.decode(token, now=NOW)


def test_expired_token_with_bad_signature_is_auth_failed_not_expired(codec: TokenCodec) -> None:
    token = jwt.encode(claims(exp=int(NOW) - 3600), OTHER_SECRET, algorithm="HS256")
    with pytest.raises(errors.AuthFailed):
        codec.decode(token, now=NOW)


def test_missing_exp_rejected(codec: TokenCodec) -> None:
    exc = assert_auth_failed(codec, jwt.encode(claims(exp=None), SECRET, algorithm="HS256"))
    assert exc.detail == "Token lacks a required claim"


@pytest.mark.parametrize("exp", ["2100-01-01", True, [1], {"t": 1}, -5, 2**60, 1e300])
def test_exp_that_is_not_a_date_rejected(codec: TokenCodec, exp: Any) -> None:
    assert_auth_failed(codec, hs256_by_hand(claims(exp=exp), SECRET))


def test_exp_infinity_rejected(codec: TokenCodec) -> None:
    # json.loads accepts the non-standard literal Infinity; it must not mean "never expires".
    header = segment({"alg": "HS256"})
    payload = b64url(b'{"sub":"alice","exp":Infinity}')
    signing_input = f"{header}.{payload}"
    mac = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    assert_auth_failed(codec, f"{signing_input}.{b64url(mac)}")


def test_fractional_exp_accepted(codec: TokenCodec) -> None:
    token = hs256_by_hand(claims(exp=NOW + 0.5), SECRET)
    assert codec.decode(token, now=NOW).exp == NOW + 0.5


def test_future_nbf_rejected(codec: TokenCodec) -> None:
    token = jwt.encode(claims(nbf=int(NOW) + 3600), SECRET, algorithm="HS256")
    exc = assert_auth_failed(codec, token)
    assert exc.detail == "Token not yet valid"


def test_nbf_within_leeway_and_past_accepted(codec: TokenCodec) -> None:
    for nbf in (int(NOW) + 30, int(NOW), int(NOW) - 100):
        token = jwt.encode(claims(nbf=nbf), SECRET, algorithm="HS256")
        assert codec.decode(token, now=NOW).sub == "alice"


def test_nbf_not_a_number_rejected(codec: TokenCodec) -> None:
    assert_auth_failed(codec, hs256_by_hand(claims(nbf="now"), SECRET))


def test_iat_in_the_future_rejected(codec: TokenCodec) -> None:
    token = jwt.encode(claims(iat=int(NOW) + 3600), SECRET, algorithm="HS256")
    assert_auth_failed(codec, token)


# --- issuer and audience -----------------------------------------------------------------------


@pytest.fixture
def strict_codec() -> TokenCodec:
    return TokenCodec(secret=SECRET, issuer="https://id.example", audience="scoreboard")


def test_right_iss_and_aud_accepted(strict_codec: TokenCodec) -> None:
    good = claims(iss="https://id.example", aud="scoreboard")
    assert strict_codec.decode(jwt.encode(good, SECRET), now=NOW).sub == "alice"
    listed = claims(iss="https://id.example", aud=["other", "scoreboard"])
    assert strict_codec.decode(jwt.encode(listed, SECRET), now=NOW).sub == "alice"


@pytest.mark.parametrize(
    "bad",
    [
        {"iss": "https://evil.example", "aud": "scoreboard"},
        {"iss": "https://id.example", "aud": "other"},
        {"iss": "https://id.example", "aud": ["other"]},
        {"iss": ["https://id.example"], "aud": "scoreboard"},
        {"aud": "scoreboard"},
        {"iss": "https://id.example"},
    ],
    ids=["wrong-iss", "wrong-aud", "wrong-aud-list", "iss-not-string", "no-iss", "no-aud"],
)
def test_wrong_or_missing_iss_aud_rejected(strict_codec: TokenCodec, bad: dict[str, Any]) -> None:
    assert_auth_failed(strict_codec, hs256_by_hand(claims(**bad), SECRET))


def test_iss_ignored_when_not_configured(codec: TokenCodec) -> None:
    token = jwt.encode(claims(iss="https://anyone.example"), SECRET)
    assert codec.decode(token, now=NOW).sub == "alice"


def test_token_for_some_audience_rejected_when_none_configured(codec: TokenCodec) -> None:
    # RFC 7519 section 4.1.3: a token addressed to an audience we are not is refused.
    assert_auth_failed(codec, jwt.encode(claims(aud="another-service"), SECRET))


# --- malformed tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "..",
        "...",
        "Bearer x.y.z",
        "x" * 10_000,
        "ünï.cö.de",
        b64url(b"not json") + "." + segment(claims()) + ".",
        segment({"alg": "HS256"}) + "." + b64url(b"[1,2]") + ".",
        segment(["alg", "HS256"]) + "." + segment(claims()) + ".",
        segment({"alg": "HS256"}) + ".!!!!." + b64url(b"sig"),
    ],
)
def test_malformed_strings_rejected(codec: TokenCodec, token: str) -> None:
    assert_auth_failed(codec, token)


@pytest.mark.parametrize("token", [None, 42, b"a.b.c"])
def test_non_string_token_rejected(codec: TokenCodec, token: Any) -> None:
    assert_auth_failed(codec, token)


def test_valid_token_with_trailing_garbage_rejected(codec: TokenCodec) -> None:
    token = codec.issue("alice", now=NOW)
    for bad in (token + "x", token + ".x", token + " ", " " + token):
        assert_auth_failed(codec, bad)


def test_payload_that_is_not_json_rejected(codec: TokenCodec) -> None:
    header = segment({"alg": "HS256"})
    signing_input = f"{header}.{b64url(b'{sub: alice')}"
    mac = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    assert_auth_failed(codec, f"{signing_input}.{b64url(mac)}")


# --- subject, role, name -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sub",
    ["x" * 65, "has space", " alice", "alice\n", "", "a/b", "ünï", "a@b", 123, ["alice"], None],
)
def test_bad_sub_rejected(codec: TokenCodec, sub: Any) -> None:
    token = hs256_by_hand({"sub": sub, "exp": int(NOW) + 60}, SECRET)
    assert_auth_failed(codec, token)


@pytest.mark.parametrize("sub", ["x" * 64, "a", "Player_1.alpha-2"])
def test_good_sub_accepted(codec: TokenCodec, sub: str) -> None:
    assert codec.decode(jwt.encode(claims(sub=sub), SECRET), now=NOW).sub == sub


def test_missing_sub_rejected(codec: TokenCodec) -> None:
    assert_auth_failed(codec, jwt.encode(claims(sub=None), SECRET))


@pytest.mark.parametrize("role", ["root", "ADMIN", "Admin", "", " admin", 1, True, ["admin"], None])
def test_bad_role_rejected(codec: TokenCodec, role: Any) -> None:
    token = hs256_by_hand({"sub": "alice", "exp": int(NOW) + 60, "role": role}, SECRET)
    assert_auth_failed(codec, token)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_accepted(codec: TokenCodec, role: Role) -> None:
    identity = codec.decode(jwt.encode(claims(role=role.value), SECRET), now=NOW)
    assert identity.role is role


def test_role_defaults_to_player(codec: TokenCodec) -> None:
    assert codec.decode(jwt.encode(claims(), SECRET), now=NOW).role is Role.PLAYER


@pytest.mark.parametrize("name", ["n" * 65, 123, ["Alice"], {"first": "A"}, True])
def test_bad_name_rejected(codec: TokenCodec, name: Any) -> None:
    token = hs256_by_hand({"sub": "alice", "exp": int(NOW) + 60, "name": name}, SECRET)
    assert_auth_failed(codec, token)


def test_null_name_rejected(codec: TokenCodec) -> None:
    token = hs256_by_hand({"sub": "alice", "exp": int(NOW) + 60, "name": None}, SECRET)
    assert_auth_failed(codec, token)


@pytest.mark.parametrize("name", ["n" * 64, "Zoë 🎮", "A", ""])
def test_good_name_accepted(codec: TokenCodec, name: str) -> None:
    assert codec.decode(jwt.encode(claims(name=name), SECRET), now=NOW).name == name


def test_name_is_optional(codec: TokenCodec) -> None:
    assert codec.decode(jwt.encode(claims(), SECRET), now=NOW).name is None


# --- public-key mode ---------------------------------------------------------------------------

KeyMaker = Callable[[], Any]
KEY_KINDS: dict[str, tuple[str, KeyMaker]] = {
    "RS256": ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "ES256": ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    "EdDSA": ("EdDSA", ed25519.Ed25519PrivateKey.generate),
}


@pytest.fixture(scope="module", params=sorted(KEY_KINDS))
def key_pair(request: pytest.FixtureRequest) -> tuple[str, Any, Any]:
    """(alg, the issuer's private key, an unrelated private key of the same type)."""
    alg, make = KEY_KINDS[request.param]
    return alg, make(), make()


def test_public_key_algorithm_is_derived_from_the_key(key_pair: tuple[str, Any, Any]) -> None:
    alg, private, _ = key_pair
    codec = TokenCodec(secret=SECRET, public_key_pem=pem(private.public_key()))
    assert codec.algorithms == ("HS256", alg)


def test_public_key_token_accepted_with_the_right_key(key_pair: tuple[str, Any, Any]) -> None:
    alg, private, _ = key_pair
    codec = TokenCodec(secret=SECRET, public_key_pem=pem(private.public_key()))
    token = jwt.encode(claims(role="server", name="Game host"), private, algorithm=alg)
    identity = codec.decode(token, now=NOW)
    assert identity == Identity(sub="alice", role=Role.SERVER, name="Game host", exp=NOW + 3600)


def test_public_key_token_signed_by_another_key_rejected(key_pair: tuple[str, Any, Any]) -> None:
    alg, private, other = key_pair
    codec = TokenCodec(secret=SECRET, public_key_pem=pem(private.public_key()))
    exc = assert_auth_failed(codec, jwt.encode(claims(), other, algorithm=alg))
    assert exc.detail == "Invalid token signature"


def test_key_confusion_hs256_signed_with_the_public_pem_rejected(
    key_pair: tuple[str, Any, Any],
) -> None:
    _, private, _ = key_pair
    public_pem = pem(private.public_key())
    codec = TokenCodec(secret=SECRET, public_key_pem=public_pem)
    for key in (public_pem, public_pem.strip()):
        assert_auth_failed(codec, hs256_by_hand(claims(role="admin"), key))


def test_hs256_with_the_secret_still_accepted_in_public_key_mode(
    key_pair: tuple[str, Any, Any],
) -> None:
    _, private, _ = key_pair
    codec = TokenCodec(secret=SECRET, public_key_pem=pem(private.public_key()))
    assert codec.decode(codec.issue("alice", now=NOW), now=NOW).sub == "alice"


def test_public_key_mode_still_checks_claims(key_pair: tuple[str, Any, Any]) -> None:
    alg, private, _ = key_pair
    codec = TokenCodec(secret=SECRET, public_key_pem=pem(private.public_key()))
    with pytest.raises(errors.TokenExpired):
        codec.decode(jwt.encode(claims(exp=int(NOW) - 60), private, algorithm=alg), now=NOW)
    assert_auth_failed(codec, jwt.encode(claims(sub="bad sub"), private, algorithm=alg))


def test_other_asymmetric_algorithms_rejected(rsa_private: rsa.RSAPrivateKey) -> None:
    codec = TokenCodec(secret=SECRET, public_key_pem=pem(rsa_private.public_key()))
    # Same RSA key, other RSA algorithms: only RS256 is on the list.
    for alg in ("RS512", "PS256"):
        assert_auth_failed(codec, jwt.encode(claims(), rsa_private, algorithm=alg))
    # A valid EdDSA token when the configured key is RSA.
    eddsa = ed25519.Ed25519PrivateKey.generate()
    assert_auth_failed(codec, jwt.encode(claims(), eddsa, algorithm="EdDSA"))


def test_rsa_codec_rejects_tokens_of_another_rsa_key(
    rsa_private: rsa.RSAPrivateKey, rsa_other_private: rsa.RSAPrivateKey
) -> None:
    codec = TokenCodec(secret=SECRET, public_key_pem=pem(rsa_private.public_key()))
    assert_auth_failed(codec, jwt.encode(claims(), rsa_other_private, algorithm="RS256"))


@pytest.mark.parametrize(
    ("make_pem", "message"),
    [
        (lambda: pem(ec.generate_private_key(ec.SECP384R1()).public_key()), "P-256"),
        (
            lambda: pem(
                rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
            ),
            "2048",
        ),
        (lambda: b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n", "PEM"),
        (
            lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "PEM",
        ),
    ],
    ids=["ec-p384", "rsa-1024", "garbage", "private-key"],
)
def test_unusable_public_keys_refused_at_construction(
    make_pem: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TokenCodec(secret=SECRET, public_key_pem=make_pem())


# --- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"leeway": 31}, "leeway"),
        ({"leeway": -1}, "leeway"),
        ({"ttl": 0}, "ttl"),
    ],
)
def test_constructor_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenCodec(secret=SECRET, **kwargs)


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenCodec(secret=SECRET[:31])


def test_str_secret_is_the_same_key() -> None:
    token = TokenCodec(secret=SECRET.decode()).issue("alice", now=NOW)
    assert TokenCodec(secret=SECRET).decode(token, now=NOW).sub == "alice"


# --- passwords ---------------------------------------------------------------------------------

ENCODED_RE = re.compile(r"scrypt\$16384\$8\$1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


def test_hash_format_is_self_describing() -> None:
    match = ENCODED_RE.fullmatch(auth.hash_password("correct horse"))
    assert match is not None
    assert len(base64.b64decode(match.group(1))) == 16
    assert len(base64.b64decode(match.group(2))) == 32


def test_hash_matches_hashlib_scrypt() -> None:
    encoded = auth.hash_password("correct horse")
    _, _, _, _, salt_b64, key_b64 = encoded.split("$")
    expected = hashlib.scrypt(
        b"correct horse", salt=base64.b64decode(salt_b64), n=2**14, r=8, p=1, dklen=32
    )
    assert base64.b64decode(key_b64) == expected


def test_verify_right_and_wrong_password() -> None:
    encoded = auth.hash_password("correct horse")
    assert auth.verify_password("correct horse", encoded) is True
    assert auth.verify_password("correct horsE", encoded) is False
    assert auth.verify_password("", encoded) is False


def test_salt_is_random() -> None:
    first, second = auth.hash_password("same"), auth.hash_password("same")
    assert first != second
    assert auth.verify_password("same", first) and auth.verify_password("same", second)


@pytest.mark.parametrize("password", ["pässwörd 🎮", "\ud800lone surrogate", "x" * 10_000])
def test_unusual_passwords_hash_and_verify(password: str) -> None:
    encoded = auth.hash_password(password)
    assert auth.verify_password(password, encoded) is True
    assert auth.verify_password(password[:-1], encoded) is False


def _valid_parts() -> list[str]:
    return auth.hash_password("pw").split("$")


def _with(index: int, value: str) -> str:
    parts = _valid_parts()
    parts[index] = value
    return "$".join(parts)


@pytest.mark.parametrize(
    "make_encoded",
    [
        lambda: "",
        lambda: "plaintext-password",
        lambda: "scrypt$",
        lambda: "$".join(_valid_parts()[:5]),
        lambda: "$".join([*_valid_parts(), "extra"]),
        lambda: _with(0, "bcrypt"),
        lambda: _with(1, "16385"),  # not a power of two
        lambda: _with(1, "1"),
        lambda: _with(1, "+16384"),
        lambda: _with(1, str(2**30)),  # would need gigabytes
        lambda: _with(2, "0"),
        lambda: _with(3, "99"),
        lambda: _with(4, "not base64!"),
        lambda: _with(4, "AAA"),  # bad padding
        lambda: _with(5, base64.b64encode(b"short").decode()),
        lambda: _valid_parts()[0] + "$" + "$".join(_valid_parts()[1:]) + "\n",
    ],
)
def test_malformed_hash_verifies_false(make_encoded: Callable[[], str]) -> None:
    assert auth.verify_password("pw", make_encoded()) is False


@pytest.mark.parametrize(("password", "encoded"), [(None, "x"), ("pw", None), (b"pw", "x")])
def test_non_string_arguments_verify_false(password: Any, encoded: Any) -> None:
    assert auth.verify_password(password, encoded) is False


def test_other_valid_parameters_still_verify() -> None:
    # Stored hashes carry their parameters, so raising the cost later keeps old hashes valid.
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=2**12, r=8, p=2, dklen=32)
    encoded = f"scrypt$4096$8$2${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
    assert auth.verify_password("pw", encoded) is True
    assert auth.verify_password("pW", encoded) is False


def test_dummy_hash_uses_the_same_parameters_and_matches_nothing_guessable() -> None:
    assert ENCODED_RE.fullmatch(auth.DUMMY_PASSWORD_HASH) is not None
    for guess in ("", "password", "DUMMY_PASSWORD_HASH", "12345678"):
        assert auth.verify_password(guess, auth.DUMMY_PASSWORD_HASH) is False


def _scrypt_encoded(password: bytes, n: int, r: int = 8, p: int = 1) -> str:
    salt = b"fedcba9876543210"
    key = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**31 - 1)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def test_a_stronger_stored_cost_verifies() -> None:
    # N=2^17 needs 128 MiB: above OpenSSL's default cap and above the old 64 MiB bound, so the
    # cost could never rise although the comment said it could.
    encoded = _scrypt_encoded(b"pw", 2**17)
    assert auth.verify_password("pw", encoded) is True
    assert auth.verify_password("pW", encoded) is False


def test_a_cost_above_the_bound_is_refused_without_work() -> None:
    # A stored row must not make one login allocate gigabytes: over the bound, no scrypt runs.
    n = 2 * auth.SCRYPT_MAX_MEMORY_BYTES // (128 * 8)
    salt, key = base64.b64encode(b"0" * 16).decode(), base64.b64encode(b"1" * 32).decode()
    started = time.monotonic()
    assert auth.verify_password("pw", f"scrypt${n}$8$1${salt}${key}") is False
    assert time.monotonic() - started < 0.05


def test_needs_rehash_when_the_parameters_differ_from_the_current_ones() -> None:
    assert auth.needs_rehash(auth.hash_password("pw")) is False
    assert auth.needs_rehash(_scrypt_encoded(b"pw", 2**12)) is True
    assert auth.needs_rehash(_scrypt_encoded(b"pw", 2**17)) is True
    assert auth.needs_rehash(_scrypt_encoded(b"pw", auth.SCRYPT_N, p=2)) is True
