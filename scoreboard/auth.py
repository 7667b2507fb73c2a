"""Who a request is: JWT issuing and checking, roles, and the stored form of passwords.

Owns the token rules of docs/api.md#tokens-and-roles (a fixed algorithm allow-list, required
claims, clock leeway, issuer and audience) and password hashing. It raises
`errors.TokenExpired` for an expired token and `errors.AuthFailed` for every other bad token;
it knows nothing of HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from scoreboard import errors


class Role(StrEnum):
    """What a token may do (docs/api.md#tokens-and-roles)."""

    PLAYER = "player"
    SERVER = "server"
    ADMIN = "admin"


_ROLES: dict[str, Role] = {role.value: role for role in Role}

#: A user id: 1-64 chars of [A-Za-z0-9_.-]. Always use `fullmatch`.
SUB_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NAME_MAX_CHARS = 64

HS256 = "HS256"
#: Clock skew tolerated on exp/nbf/iat; the product promises at most 30 s.
MAX_LEEWAY_SECONDS = 30
#: An HS256 key shorter than its 32-byte digest is below RFC 7518 section 3.2: refused.
MIN_SECRET_BYTES = 32
MIN_RSA_KEY_BITS = 2048
# Far above any token we issue or accept; junk this long is refused before base64 and JSON work.
MAX_TOKEN_CHARS = 8192
# NumericDate claims above this are not dates; refusing them keeps float() and comparisons sane.
_MAX_NUMERIC_DATE = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Identity:
    """The checked contents of a token."""

    sub: str
    role: Role
    name: str | None
    exp: float


def load_public_key(pem: bytes) -> tuple[str, Any]:
    """Load a PEM public key and return (the one JWT algorithm it verifies, the key object).

    The algorithm comes from the key type, never from a token: RSA -> RS256, EC P-256 -> ES256,
    Ed25519 -> EdDSA. Anything else raises ValueError, so a bad key file fails at start-up.
    """
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise ValueError(
                f"RSA public key must have at least {MIN_RSA_KEY_BITS} bits, got {key.key_size}"
            )
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC public key must be on P-256 (ES256), got {key.curve.name!r}")
        return "ES256", key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA", key
    raise ValueError(f"unsupported public key type {type(key).__name__!r}")


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= NAME_MAX_CHARS


def _numeric_date(claims: dict[str, Any], claim: str) -> float | None:
    """The claim as a number of seconds, None when absent; AuthFailed when not a sane number."""
    if claim not in claims:
        return None
    value = claims[claim]
    # bool is an int subclass and json.loads accepts NaN/Infinity: neither is a date.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or not 0 <= value <= _MAX_NUMERIC_DATE
    ):
        raise errors.AuthFailed("Malformed token")
    return float(value)


class TokenCodec:
    """Issues HS256 tokens and checks incoming ones against one fixed configuration."""

    def __init__(
        self,
        *,
        secret: bytes | str,
        public_key_pem: bytes | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        ttl: int = 86400,
        leeway: int = 30,
    ) -> None:
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"JWT secret must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}"
            )
        if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be 0-{MAX_LEEWAY_SECONDS} seconds, got {leeway!r}")
        if ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway
        # One verification key per allowed algorithm. HS256 is always checked with the secret
        # and the public key only with its own algorithm, so a token signed with HS256 using
        # the public PEM as the HMAC key (the key-confusion attack) can never verify.
        self._keys: dict[str, Any] = {HS256: secret}
        if public_key_pem is not None:
            alg, key = load_public_key(public_key_pem)
            self._keys[alg] = key
        self.algorithms: tuple[str, ...] = tuple(self._keys)
        required = ["exp", "sub"]
        if issuer is not None:
            required.append("iss")
        if audience is not None:
            required.append("aud")
        self._jwt = jwt.PyJWT(
            options={
                "verify_signature": True,
                # Time claims are checked below against the caller's `now`, which PyJWT
                # cannot take (it reads the clock itself).
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_iss": issuer is not None,
                # Always on: with no audience configured, a token that names an audience is
                # meant for someone else and is refused (RFC 7519 section 4.1.3).
                "verify_aud": True,
                "verify_sub": True,
                "verify_jti": True,
                "require": required,
                "enforce_minimum_key_length": True,
            }
        )

    def issue(
        self,
        sub: str,
        *,
        role: Role | str = Role.PLAYER,
        name: str | None = None,
        ttl: int | None = None,
        now: float | None = None,
    ) -> str:
        """Sign an HS256 token that this codec's own `decode` accepts."""
        if not isinstance(sub, str) or SUB_RE.fullmatch(sub) is None:
            raise ValueError(f"sub must be 1-64 chars of [A-Za-z0-9_.-], got {sub!r}")
        checked_role = _ROLES.get(role) if isinstance(role, str) else None
        if checked_role is None:
            raise ValueError(f"role must be one of {sorted(_ROLES)}, got {role!r}")
        if name is not None and not _valid_name(name):
            raise ValueError(f"name must be at most {NAME_MAX_CHARS} chars, got {name!r}")
        lifetime = self.ttl if ttl is None else ttl
        if lifetime <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {lifetime!r}")
        issued_at = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "sub": sub,
            "role": checked_role.value,
            "iat": issued_at,
            "exp": issued_at + lifetime,
        }
        if name is not None:
            claims["name"] = name
        if self.issuer is not None:
            claims["iss"] = self.issuer
        if self.audience is not None:
            claims["aud"] = self.audience
        return jwt.encode(claims, self._secret, algorithm=HS256)

    def decode(self, token: str, *, now: float | None = None) -> Identity:
        """Check a token and return who it names.

        Raises errors.TokenExpired when it expired more than `leeway` seconds ago and
        errors.AuthFailed for anything else wrong. Details are short and never quote the token.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise errors.AuthFailed("Malformed token")
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            # Checked before any verification: the token must not choose how it is verified.
            if not isinstance(alg, str) or alg not in self._keys:
                raise errors.AuthFailed("Token algorithm not allowed")
            claims = self._jwt.decode(
                token,
                self._keys[alg],
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
            )
        except jwt.InvalidSignatureError:
            raise errors.AuthFailed("Invalid token signature") from None
        except jwt.MissingRequiredClaimError:
            raise errors.AuthFailed("Token lacks a required claim") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
            raise errors.AuthFailed("Token issuer or audience not accepted") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise errors.AuthFailed("Malformed token") from None
        return self._identity(claims, time.time() if now is None else now)

    def _identity(self, claims: dict[str, Any], now: float) -> Identity:
        exp = _numeric_date(claims, "exp")
        if exp is None:  # `require` already refused a missing exp; this keeps the type exact
            raise errors.AuthFailed("Token lacks a required claim")
        if exp <= now - self.leeway:
            raise errors.TokenExpired("Token expired")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise errors.AuthFailed("Token not yet valid")
        iat = _numeric_date(claims, "iat")
        if iat is not None and iat > now + self.leeway:
            raise errors.AuthFailed("Token issued in the future")
        sub = claims["sub"]
        if not isinstance(sub, str) or SUB_RE.fullmatch(sub) is None:
            raise errors.AuthFailed("Invalid token subject")
        role_claim = claims.get("role", Role.PLAYER.value)
        role = _ROLES.get(role_claim) if isinstance(role_claim, str) else None
        if role is None:
            raise errors.AuthFailed("Invalid token role")
        name = claims.get("name")
        if "name" in claims and not _valid_name(name):
            raise errors.AuthFailed("Invalid token name")
        return Identity(sub=sub, role=role, name=name, exp=exp)


# --- passwords ---------------------------------------------------------------------------------

# scrypt cost: 16 MiB and about 40 ms per hash on the reference machine, the usual interactive
# setting (RFC 7914 section 2). Stored hashes carry their own parameters, so these can rise later:
# a hash made at another cost still verifies, and is re-hashed at these on the next log-in.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_KEY_BYTES = 32
#: Bound on the memory (128 * r * N bytes) of a stored hash's parameters: 256 MiB is N = 2^18
#: at r = 8, sixteen times today's cost and room for several raises, while a corrupt or planted
#: row cannot make one log-in allocate gigabytes (it verifies False without running scrypt).
SCRYPT_MAX_MEMORY_BYTES = 256 * 1024 * 1024
_SCRYPT_MAX_P = 16
_ENCODED_RE = re.compile(
    r"scrypt\$([1-9][0-9]{0,9})\$([1-9][0-9]{0,3})\$([1-9][0-9]{0,3})"
    r"\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})"
)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, key_bytes: int) -> bytes:
    # surrogatepass: a JSON body can carry a lone surrogate; it must hash, not crash the handler.
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=key_bytes,
        # OpenSSL needs about 128*r*(n+p+2) bytes and refuses more than `maxmem` (32 MiB by
        # default): allow what these parameters need; verify_password bounds the parameters.
        maxmem=128 * r * (n + p + 2) + 1024 * 1024,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a random salt: `scrypt$N$r$p$<salt b64>$<key b64>`.

    CPU-bound (tens of ms): call it from an executor, not on the IOLoop.
    """
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches `encoded`; False for a wrong password or a malformed hash.

    Compares in constant time. CPU-bound like `hash_password`.
    """
    if not isinstance(password, str) or not isinstance(encoded, str):
        return False
    match = _ENCODED_RE.fullmatch(encoded)
    if match is None:
        return False
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not _allowed_cost(n, r, p):
        return False
    try:
        salt = base64.b64decode(match.group(4), validate=True)
        expected = base64.b64decode(match.group(5), validate=True)
    except binascii.Error:
        return False
    if len(salt) < 8 or not 16 <= len(expected) <= 64:
        return False
    try:
        derived = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(derived, expected)


def _allowed_cost(n: int, r: int, p: int) -> bool:
    return (
        n >= 2 and not n & (n - 1) and p <= _SCRYPT_MAX_P and 128 * r * n <= SCRYPT_MAX_MEMORY_BYTES
    )


def needs_rehash(encoded: str) -> bool:
    """True when a stored hash was made with other parameters than today's (re-hash at log-in)."""
    match = _ENCODED_RE.fullmatch(encoded)
    if match is None:
        return True
    params = tuple(int(match.group(i)) for i in (1, 2, 3))
    key_chars = len(match.group(5))
    return params != (SCRYPT_N, SCRYPT_R, SCRYPT_P) or key_chars != len(
        _b64(bytes(SCRYPT_KEY_BYTES))
    )


#: The hash of a random string nobody knows. Login verifies against it when the user does not
#: exist, so an unknown name costs the same time as a wrong password.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(32))
