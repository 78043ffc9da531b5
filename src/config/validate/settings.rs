//! Allow and deny lists, overrides, and policy names used twice.

use super::*;

impl Validator<'_> {
    pub(super) fn access(&mut self, path: &Path, spec: &AccessSpec) {
        let mut listed: HashMap<ipnet::IpNet, Path> = HashMap::new();
        for (list, items) in [("allow", &spec.allow), ("deny", &spec.deny)] {
            for (i, text) in items.iter().enumerate() {
                let at = path.key(list).index(i);
                match values::net(text) {
                    Ok(net) => {
                        let net = crate::key::canonical_net(net);
                        if values::is_everything(&net) {
                            let what = if list == "allow" {
                                "exempts every client from every limit"
                            } else {
                                "refuses every client"
                            };
                            self.warn(
                                &at,
                                format!("{text:?} {what}"),
                                "list the ranges meant, not every address",
                            );
                        }
                        if let Some(first) = listed.get(&net) {
                            let first = first.to_string();
                            if list == "deny" && first.starts_with(&format!("{path}.allow")) {
                                self.warn(
                                    &at,
                                    format!("{text:?} is also allowed ({first}); a range is on one list at a time and deny wins"),
                                    "remove it from one of the lists",
                                );
                            }
                        } else {
                            listed.insert(net, at.clone());
                        }
                    }
                    Err(bad) => self.bad(&at, bad),
                }
            }
        }
        for (list, items) in [
            ("allow_keys", &spec.allow_keys),
            ("deny_keys", &spec.deny_keys),
        ] {
            for (i, key) in items.iter().enumerate() {
                self.key_value(&path.key(list).index(i), key);
            }
        }
        if let Some(key) = &spec.client_ip {
            let at = path.key("client_ip");
            if key.kind.as_deref().is_some_and(|k| k != "client_ip") {
                self.error(
                    &at.key("kind"),
                    "the access lists find clients by address: their key must be a client_ip key",
                    "remove kind, or set kind = \"client_ip\"",
                );
            } else {
                self.key(&at, key);
            }
        }
    }

    pub(super) fn key_value(&mut self, path: &Path, spec: &KeyValueSpec) {
        let set = [&spec.ip, &spec.api_key, &spec.value]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            self.error(
                path,
                if set == 0 {
                    "an empty key"
                } else {
                    "more than one form of key"
                }
                .to_owned(),
                "give exactly one of ip = \"192.0.2.7\", api_key = \"…\" or value = \"user-42\"",
            );
        }
        if let Some(ip) = &spec.ip {
            if ip.trim().parse::<std::net::IpAddr>().is_err() {
                self.error(
                    &path.key("ip"),
                    format!("{ip:?} is not an IP address"),
                    "write one address such as \"192.0.2.7\" or \"2001:db8::7\" (ranges go in allow and deny)",
                );
            }
        }
    }

    pub(super) fn override_(
        &mut self,
        path: &Path,
        spec: &OverrideSpec,
        default_name: Option<&str>,
    ) {
        let policy = match (&spec.policy, default_name) {
            (Some(p), _) => Some(p.as_str()),
            (None, Some(d)) => Some(d),
            (None, None) => {
                self.error(
                    &path.key("policy"),
                    "missing: there is no default policy to apply the override to",
                    "name the policy: policy = \"search\"",
                );
                None
            }
        };
        let seen = policy.and_then(|name| self.policies.iter().position(|p| p.name == name));
        if let (Some(name), None) = (policy, seen) {
            let names: Vec<&str> = self.policies.iter().map(|p| p.name.as_str()).collect();
            let fix = match did_you_mean(name, names.iter().copied()) {
                Some(close) => format!("did you mean {close:?}?"),
                None if names.is_empty() => "define the policy first".to_owned(),
                None => format!("the policies are {}", one_of(&names)),
            };
            self.error(
                &path.key("policy"),
                format!("no policy is named {name:?}"),
                fix,
            );
        }
        match &spec.key {
            None => self.error(
                &path.key("key"),
                "missing: whose quota this is",
                "add key = { ip = \"192.0.2.7\" } (or api_key, or value)",
            ),
            Some(key) => self.key_value(&path.key("key"), key),
        }
        match &spec.quota {
            None => self.error(
                &path.key("quota"),
                "missing: an override needs a quota",
                "add quota = \"600/m\"",
            ),
            Some(text) => match values::quota(text) {
                Ok(q) => {
                    let algorithm = seen.and_then(|i| self.policies[i].algorithm);
                    if let Some(a) = algorithm {
                        self.quota_fits(&path.key("quota"), text, &q, a);
                    }
                }
                Err(bad) => self.bad(&path.key("quota"), bad),
            },
        }
        if let Some(text) = &spec.expires_at {
            match values::instant(text) {
                Ok(at) if at <= self.ctx.now => self.warn(
                    &path.key("expires_at"),
                    format!("{text} is past: the override is ignored"),
                    "remove it, or give a later expiry",
                ),
                Ok(_) => {}
                Err(bad) => self.bad(&path.key("expires_at"), bad),
            }
        }
    }

    pub(super) fn duplicate_policies(&mut self) {
        let mut problems = Vec::new();
        for (i, later) in self.policies.iter().enumerate() {
            let Some(first) = self.policies[..i].iter().find(|p| p.name == later.name) else {
                continue;
            };
            let differs = match (first.quota, later.quota) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            } || match (first.algorithm, later.algorithm) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            };
            if differs {
                problems.push((
                    later.path.key("name"),
                    later.name.clone(),
                    first.path.to_string(),
                ));
            }
        }
        for (at, name, first) in problems {
            self.error(
                &at,
                format!("policy {name:?} is also {first}, with another quota or algorithm; policies of one name share their counters"),
                "give this rule its own name, or the same quota and algorithm",
            );
        }
    }
}
