"""Signing keys: rotating an HMAC secret, or signing with an asymmetric key pair."""

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from postkit import PostKitSettings


def rotated_settings(new_secret: str, old_secret: str, **other: Any) -> PostKitSettings:
    """Sign with ``new_secret``; tokens signed with ``old_secret`` keep working until it is
    removed from ``previous_secret_keys`` (wait at least ``access_token_ttl``)."""
    return PostKitSettings(secret_key=new_secret, previous_secret_keys=[old_secret], **other)


def es256_key_pair() -> tuple[str, str]:
    """A new ECDSA P-256 key pair as PEM text: (private key, public key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def es256_settings(private_pem: str, public_pem: str, **other: Any) -> PostKitSettings:
    """Sign with the private key; anything holding the public key can verify tokens."""
    return PostKitSettings(
        jwt_algorithm="ES256", jwt_private_key=private_pem, jwt_public_key=public_pem, **other
    )
