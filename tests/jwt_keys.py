"""RS256 keys and Clerk-shaped session tokens made with PyJWT and cryptography (not our code)."""
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class Issuer:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.private_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def token(self, sub, sid=None, ttl=60, nbf_offset=-10, iat_offset=0, azp=None, extra=None, headers=None, alg="RS256", key=None):
        now = int(time.time())
        claims = {"sub": sub, "sid": sid or "sess_" + uuid.uuid4().hex[:16], "iat": now + iat_offset,
                  "nbf": now + nbf_offset, "exp": now + ttl, "v": 2}
        if azp:
            claims["azp"] = azp
        claims.update(extra or {})
        return jwt.encode(claims, key if key is not None else self.private_pem, algorithm=alg, headers=headers)

    def env(self):
        # As .env files often hold it: one line with literal \n.
        return {"CLERK_JWT_KEY": self.public_pem.replace("\n", "\\n")}
