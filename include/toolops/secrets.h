// include/toolops/secrets.h
//
// Recognising secrets so that their values never reach a log line, a span or
// a cache key.
//
// A parameter or field name "looks like a secret" when one of its words is a
// secret word (password, passwd, secret, token, auth, authorization, cookie,
// session, credential(s), bearer, jwt, ...) or two adjacent words form one
// (api key, private key, access key, client secret, session id). Words are
// split at anything that is not a letter or a digit and at lower-to-upper
// case changes, and compared case-insensitively: "api_key", "apiKey",
// "X-Api-Key", "access_token", "AUTH" match; "author", "keyword", "monkey",
// "tokenizer_name" do not (no word of theirs is a secret word).
//
// Pure functions; safe for concurrent use.

#ifndef TOOLOPS_SECRETS_H_
#define TOOLOPS_SECRETS_H_

#include <string>
#include <string_view>

namespace toolops {

// What a masked value is replaced with.
inline constexpr std::string_view kMaskedValue = "***";

bool LooksLikeSecretName(std::string_view name);

// `text` with the values of secret-looking names masked, in the forms that
// carry them in messages and payloads: name=value, name: value,
// "name": "value" (JSON), and "Authorization: Bearer value". Text without
// such a pair is returned unchanged.
std::string MaskSecretsInText(std::string_view text);

}  // namespace toolops

#endif  // TOOLOPS_SECRETS_H_
