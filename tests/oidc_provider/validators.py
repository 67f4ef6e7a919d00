"""The provider's claims (username, email, names, groups) and its misbehaviour modes."""

import json
import time

from django.conf import settings
from jwcrypto import jwk, jwt
from oauth2_provider.oauth2_validators import OAuth2Validator

# Set through the control API; one provider process serves one test session.
STATE = {"mode": "normal"}
MODES = ("normal", "rogue_key", "wrong_audience", "expired", "wrong_issuer", "wrong_nonce")


class TestValidator(OAuth2Validator):
    oidc_claim_scope = None  # every claim below, whatever the scopes (groups is not a standard one)

    def get_additional_claims(self, request):
        user = request.user
        return {
            "preferred_username": user.username,
            "email": user.email,
            "given_name": user.first_name,
            "family_name": user.last_name,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }

    def finalize_id_token(self, id_token, token, token_handler, request):
        """DOT's own, plus the misbehaviour of the current mode."""
        claims, expiration_time = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(**claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        mode = STATE["mode"]
        key = request.client.jwk_key
        if mode == "wrong_audience":
            id_token["aud"] = "someone-else"
        elif mode == "expired":
            id_token["iat"] = int(time.time()) - 7200
            id_token["exp"] = int(time.time()) - 3600
        elif mode == "wrong_issuer":
            id_token["iss"] = "http://127.0.0.1:1/elsewhere"
        elif mode == "wrong_nonce":
            id_token["nonce"] = "not-the-one-you-sent"
        header = {"typ": "JWT", "alg": request.client.algorithm, "kid": key.thumbprint()}
        if mode == "rogue_key":
            # The published key's id, another key's signature: only a real signature check notices.
            key = jwk.JWK.from_pem(settings.OIDC_TEST_ROGUE_KEY.encode())
        signed = jwt.JWT(header=json.dumps(header), claims=json.dumps(id_token, default=str))
        signed.make_signed_token(key)
        saved = self._save_id_token(id_token["jti"], request, expiration_time)
        request.access_token = saved
        request.id_token = saved
        return signed.serialize()
