//! Key extractors: the fields each kind takes, client IPs and their
//! proxies, JWTs and their keys.

use super::*;

impl Validator<'_> {
    pub(super) fn header_name(&mut self, path: &Path, name: &str) {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.error(
                path,
                format!("{name:?} is not a valid header name"),
                "use letters, digits and - only, e.g. \"x-api-key\"",
            );
        }
    }

    pub(super) fn key(&mut self, path: &Path, spec: &KeySpec) {
        let kind = spec.kind.as_deref().unwrap_or("client_ip");
        let names: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        let Some((_, fields)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            self.error(
                &path.key("kind"),
                format!("unknown key kind {kind:?}"),
                suggest(kind, &names),
            );
            return;
        };
        for (field, set) in set_fields(spec) {
            if set && !fields.contains(&field) {
                let owner = KINDS
                    .iter()
                    .find(|(_, f)| f.contains(&field))
                    .map_or("another kind", |(k, _)| *k);
                let fix = if field == "on_missing" {
                    "remove it: only header, query, user and bearer keys can find nothing and choose".to_owned()
                } else {
                    format!("remove it, or set kind = \"{owner}\"")
                };
                self.error(
                    &path.key(field),
                    format!("`{field}` does not apply to a {kind} key"),
                    fix,
                );
            }
        }
        match kind {
            "client_ip" => self.client_ip(path, spec),
            "header" | "query" | "user" => match &spec.name {
                None => self.error(
                    &path.key("name"),
                    format!("missing: a {kind} key needs a name"),
                    match kind {
                        "header" => "add name = \"x-api-key\"",
                        "query" => "add name = \"api_key\"",
                        _ => "add the name your application registers its user extractor under",
                    },
                ),
                Some(name) if kind == "header" => self.header_name(&path.key("name"), name),
                Some(name) if name.is_empty() => self.error(
                    &path.key("name"),
                    "an empty name",
                    "give the parameter's name, e.g. \"api_key\"",
                ),
                Some(_) => {}
            },
            "bearer" => self.bearer(path, spec),
            "composite" => {
                if !(2..=4).contains(&spec.parts.len()) {
                    self.error(
                        &path.key("parts"),
                        format!("a composite key combines 2 to 4 keys, not {}", spec.parts.len()),
                        "list 2 to 4 keys in parts, e.g. [{ kind = \"client_ip\" }, { kind = \"route\" }]",
                    );
                }
                for (i, part) in spec.parts.iter().enumerate() {
                    self.key(&path.key("parts").index(i), part);
                }
            }
            _ => {}
        }
        if let Some(on_missing) = spec
            .on_missing
            .as_ref()
            .filter(|_| fields.contains(&"on_missing"))
        {
            match on_missing.as_str() {
                "reject" => {}
                "skip" if kind == "bearer" => self.warn(
                    &path.key("on_missing"),
                    "with skip, a request with a forged or expired token passes unlimited",
                    "prefer a fallback key (fallback = { kind = \"client_ip\" }) so such requests are limited by address",
                ),
                "skip" => {}
                other => self.error(
                    &path.key("on_missing"),
                    format!("unknown on_missing {other:?}"),
                    suggest(other, &["reject", "skip"]),
                ),
            }
        }
        if let Some(fallback) = &spec.fallback {
            self.key(&path.key("fallback"), fallback);
        }
    }

    pub(super) fn client_ip(&mut self, path: &Path, spec: &KeySpec) {
        for (i, text) in spec.trusted_proxies.iter().enumerate() {
            let at = path.key("trusted_proxies").index(i);
            match values::net(text) {
                Ok(net) if values::is_everything(&net) => self.warn(
                    &at,
                    format!("trusting {text:?} believes every address: any client can choose its own key"),
                    "list only your proxies' addresses (trust_private = true for a private network)",
                ),
                Ok(_) => {}
                Err(bad) => self.bad(&at, bad),
            }
        }
        if let Some(header) = &spec.header {
            let lower = header.to_ascii_lowercase();
            if !CLIENT_IP_HEADERS.contains(&lower.as_str()) {
                if HeaderName::from_bytes(header.as_bytes()).is_err() {
                    self.error(
                        &path.key("header"),
                        format!("{header:?} is not a valid header name"),
                        suggest(header, CLIENT_IP_HEADERS),
                    );
                } else if let Some(close) = did_you_mean(&lower, CLIENT_IP_HEADERS.iter().copied())
                {
                    self.warn(
                        &path.key("header"),
                        format!("{header:?} is read as a single-value header"),
                        format!("did you mean {close:?}?"),
                    );
                }
            }
            let trusts = !spec.trusted_proxies.is_empty()
                || spec.trust_loopback == Some(true)
                || spec.trust_private == Some(true);
            if !trusts {
                self.warn(
                    &path.key("header"),
                    "the header is read only from trusted proxies, and none is trusted",
                    "add trusted_proxies (your proxies' ranges), trust_loopback or trust_private",
                );
            }
        }
        if let Some(bits) = spec.ipv6_prefix {
            if !(48..=128).contains(&bits) {
                self.error(
                    &path.key("ipv6_prefix"),
                    format!("an IPv6 prefix of {bits} is outside 48 to 128"),
                    "use 64 (the default: one subscriber's network), 56, 48, or 128 for single addresses",
                );
            }
        }
    }

    pub(super) fn bearer(&mut self, path: &Path, spec: &KeySpec) {
        if !cfg!(feature = "jwt") {
            self.missing_feature(path, "a bearer (JWT) key", "jwt");
        }
        let sources: Vec<(&str, &String)> = [
            ("secret_env", &spec.secret_env),
            ("secret_file", &spec.secret_file),
            ("rsa_pem_file", &spec.rsa_pem_file),
            ("ec_pem_file", &spec.ec_pem_file),
            ("ed_pem_file", &spec.ed_pem_file),
            ("jwks_file", &spec.jwks_file),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| (name, v)))
        .collect();
        match sources.as_slice() {
            [] => self.error(
                path,
                "a bearer key needs a key to verify tokens with",
                "add one of secret_env = \"JWT_SECRET\" (HS256), secret_file, rsa_pem_file, ec_pem_file, ed_pem_file or jwks_file",
            ),
            [_] => {}
            [_, second, ..] => self.error(
                &path.key(second.0),
                format!("more than one key source ({})", sources.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")),
                "keep exactly one (a JWKS file holds several keys)",
            ),
        }
        for (field, value) in &sources {
            let at = path.key(field);
            if *field == "secret_env" {
                if (self.ctx.env)(value).is_none() {
                    self.warn(
                        &at,
                        format!("the variable {value} is not set here"),
                        "set it where tollgate runs (the secret stays out of the file)",
                    );
                }
            } else {
                let file = match self.ctx.base_dir {
                    Some(dir) => dir.join(value.as_str()),
                    None => PathBuf::from(value.as_str()),
                };
                if !file.is_file() {
                    self.warn(
                        &at,
                        format!("{value:?} is not a file here"),
                        "give a path relative to the configuration file's directory, or an absolute one",
                    );
                }
            }
        }
        let family: Option<(&str, &[&str])> = sources.first().and_then(|(field, _)| match *field {
            "secret_env" | "secret_file" => {
                Some(("an HMAC secret", &["HS256", "HS384", "HS512"][..]))
            }
            "rsa_pem_file" => Some((
                "an RSA key",
                &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"][..],
            )),
            "ec_pem_file" => Some(("an EC key", &["ES256", "ES384"][..])),
            "ed_pem_file" => Some(("an Ed25519 key", &["EdDSA"][..])),
            _ => None,
        });
        for (i, name) in spec.algorithms.iter().enumerate() {
            let at = path.key("algorithms").index(i);
            if !JWT_ALGORITHMS.contains(&name.as_str()) {
                let fix = if name.eq_ignore_ascii_case("none") {
                    "unsigned tokens are never accepted; list signing algorithms such as \"HS256\" or \"RS256\"".to_owned()
                } else {
                    suggest(name, JWT_ALGORITHMS)
                };
                self.error(&at, format!("unknown JWT algorithm {name:?}"), fix);
            } else if let Some((what, usable)) = family {
                if !usable.contains(&name.as_str()) {
                    self.error(
                        &at,
                        format!("{name} tokens cannot be verified with {what}"),
                        format!("use {} with this key", one_of(usable)),
                    );
                }
            }
        }
        if let Some(claim) = &spec.claim {
            if claim.is_empty() {
                self.error(
                    &path.key("claim"),
                    "an empty claim name",
                    "leave it out for `sub`, or name the claim",
                );
            }
        }
        if let Some(leeway) = self.duration(&path.key("leeway"), spec.leeway.as_ref()) {
            if leeway > Duration::from_secs(86_400) {
                self.error(
                    &path.key("leeway"),
                    "a leeway of more than a day accepts long-expired tokens",
                    "use at most \"1d\" (the default is 30s)",
                );
            }
        }
        if spec.max_token_len == Some(0) {
            self.error(
                &path.key("max_token_len"),
                "a maximum token length of 0 refuses every token",
                "leave it out (8192 bytes) or give the longest token you issue",
            );
        }
    }
}

/// Each kind-specific field of a key and whether it is set.
fn set_fields(spec: &KeySpec) -> [(&'static str, bool); 21] {
    [
        ("trusted_proxies", !spec.trusted_proxies.is_empty()),
        ("trust_loopback", spec.trust_loopback.is_some()),
        ("trust_private", spec.trust_private.is_some()),
        ("header", spec.header.is_some()),
        ("ipv6_prefix", spec.ipv6_prefix.is_some()),
        ("name", spec.name.is_some()),
        ("secret_env", spec.secret_env.is_some()),
        ("secret_file", spec.secret_file.is_some()),
        ("rsa_pem_file", spec.rsa_pem_file.is_some()),
        ("ec_pem_file", spec.ec_pem_file.is_some()),
        ("ed_pem_file", spec.ed_pem_file.is_some()),
        ("jwks_file", spec.jwks_file.is_some()),
        ("algorithms", !spec.algorithms.is_empty()),
        ("claim", spec.claim.is_some()),
        ("issuers", !spec.issuers.is_empty()),
        ("audiences", !spec.audiences.is_empty()),
        ("leeway", spec.leeway.is_some()),
        ("require_exp", spec.require_exp.is_some()),
        ("max_token_len", spec.max_token_len.is_some()),
        ("parts", !spec.parts.is_empty()),
        ("on_missing", spec.on_missing.is_some()),
    ]
}
