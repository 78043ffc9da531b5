//! [`AccessList`]: clients that are never limited, and clients that are
//! refused, by IP range or by key; changeable at runtime.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use http::request::Parts;
use ipnet::IpNet;
use prefix_trie::joint::JointPrefixSet;

use crate::key::{ClientIp, Key};

/// What an [`AccessList`] says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Never limited.
    Allow,
    /// Refused with `403 Forbidden` (problem+json).
    Deny,
    /// Limited as usual.
    Limit,
}

#[derive(Default)]
struct Lists {
    allow_nets: JointPrefixSet<IpNet>,
    deny_nets: JointPrefixSet<IpNet>,
    allow_keys: HashSet<Key>,
    deny_keys: HashSet<Key>,
}

/// Allow and deny lists of IP ranges (a prefix trie: a lookup costs the
/// same with 10 or 100,000 ranges) and of keys (an API key's
/// [`Key::secret`], a user id…). **Deny wins** over allow. Clones share
/// the lists, so a clone kept by an admin endpoint changes what the layer
/// sees at once.
///
/// The client address is resolved by a [`ClientIp`] (peer address by
/// default; give it your trusted proxies with [`AccessList::client_ip`]).
///
/// ```
/// use tollgate::{AccessList, Quota, RateLimitLayer};
///
/// let access = AccessList::new()
///     .allowing(["10.0.0.0/8".parse().unwrap()])     // office: never limited
///     .denying(["203.0.113.0/24".parse().unwrap()]);  // refused with 403
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_minute(60))
///     .access(access.clone())
///     .build()
///     .unwrap();
/// // Later, at runtime:
/// access.deny_net("198.51.100.7/32".parse().unwrap());
/// ```
#[derive(Clone)]
pub struct AccessList {
    lists: Arc<RwLock<Lists>>,
    client_ip: ClientIp,
}

impl Default for AccessList {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AccessList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.read();
        f.debug_struct("AccessList")
            .field("allow_nets", &l.allow_nets.len())
            .field("deny_nets", &l.deny_nets.len())
            .field("allow_keys", &l.allow_keys.len())
            .field("deny_keys", &l.deny_keys.len())
            .finish()
    }
}

impl AccessList {
    /// Empty lists; the client address is the peer's.
    pub fn new() -> Self {
        AccessList {
            lists: Arc::default(),
            client_ip: ClientIp::new(),
        }
    }

    /// Resolves client addresses with `client_ip` (e.g.
    /// `ClientIp::trusting([..])` behind a proxy).
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// Adds ranges to the allow list (builder form).
    pub fn allowing(self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        for net in nets {
            self.allow_net(net);
        }
        self
    }

    /// Adds ranges to the deny list (builder form).
    pub fn denying(self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        for net in nets {
            self.deny_net(net);
        }
        self
    }

    /// Never limits clients in `net`.
    pub fn allow_net(&self, net: IpNet) {
        self.write().allow_nets.insert(net.trunc());
    }

    /// Refuses clients in `net`.
    pub fn deny_net(&self, net: IpNet) {
        self.write().deny_nets.insert(net.trunc());
    }

    /// Removes `net` from both lists (exactly that range).
    pub fn remove_net(&self, net: IpNet) {
        let mut l = self.write();
        l.allow_nets.remove(&net.trunc());
        l.deny_nets.remove(&net.trunc());
    }

    /// Never limits requests whose key is `key`.
    pub fn allow_key(&self, key: Key) {
        self.write().allow_keys.insert(key);
    }

    /// Refuses requests whose key is `key`.
    pub fn deny_key(&self, key: Key) {
        self.write().deny_keys.insert(key);
    }

    /// Removes `key` from both lists.
    pub fn remove_key(&self, key: &Key) {
        let mut l = self.write();
        l.allow_keys.remove(key);
        l.deny_keys.remove(key);
    }

    /// What the lists say about an address.
    pub fn check_ip(&self, ip: IpAddr) -> Access {
        let net = IpNet::from(ip.to_canonical());
        let l = self.read();
        if l.deny_nets.get_spm(&net).is_some() {
            Access::Deny
        } else if l.allow_nets.get_spm(&net).is_some() {
            Access::Allow
        } else {
            Access::Limit
        }
    }

    /// What the lists say about a key.
    pub fn check_key(&self, key: &Key) -> Access {
        let l = self.read();
        if l.deny_keys.contains(key) {
            Access::Deny
        } else if l.allow_keys.contains(key) {
            Access::Allow
        } else {
            Access::Limit
        }
    }

    /// What the lists say about a request's client address (no address:
    /// [`Access::Limit`], left to the key extractor).
    pub fn check_request(&self, parts: &Parts) -> Access {
        match self.client_ip.client_addr(parts) {
            Some(ip) => self.check_ip(ip),
            None => Access::Limit,
        }
    }

    /// Whether any key is listed (so the layer can skip the key lookup).
    pub(crate) fn has_keys(&self) -> bool {
        let l = self.read();
        !l.allow_keys.is_empty() || !l.deny_keys.is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Lists> {
        self.lists.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Lists> {
        self.lists.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_allow_and_deny_and_deny_wins() {
        let a = AccessList::new()
            .allowing([net("10.0.0.0/8"), net("2001:db8::/32")])
            .denying([net("10.6.6.0/24")]);
        assert_eq!(a.check_ip(ip("10.1.2.3")), Access::Allow);
        assert_eq!(a.check_ip(ip("10.6.6.6")), Access::Deny);
        assert_eq!(a.check_ip(ip("2001:db8:1::1")), Access::Allow);
        assert_eq!(a.check_ip(ip("192.0.2.1")), Access::Limit);
        assert_eq!(
            a.check_ip(ip("::ffff:10.1.2.3")),
            Access::Allow,
            "mapped IPv4 is IPv4"
        );
    }

    #[test]
    fn changes_at_runtime_are_seen_by_every_clone() {
        let a = AccessList::new();
        let admin = a.clone();
        admin.deny_net(net("192.0.2.0/24"));
        assert_eq!(a.check_ip(ip("192.0.2.9")), Access::Deny);
        admin.remove_net(net("192.0.2.0/24"));
        assert_eq!(a.check_ip(ip("192.0.2.9")), Access::Limit);
        admin.allow_key(Key::from("vip"));
        assert_eq!(a.check_key(&Key::from("vip")), Access::Allow);
        admin.deny_key(Key::from("vip"));
        assert_eq!(a.check_key(&Key::from("vip")), Access::Deny);
        admin.remove_key(&Key::from("vip"));
        assert_eq!(a.check_key(&Key::from("vip")), Access::Limit);
    }

    #[test]
    fn a_hundred_thousand_ranges_answer_correctly() {
        let a = AccessList::new();
        for i in 0..100_000u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8));
            a.deny_net(IpNet::V4(ipnet::Ipv4Net::new(addr, 24).unwrap()));
        }
        assert_eq!(a.check_ip(ip("10.0.5.7")), Access::Deny);
        assert_eq!(a.check_ip(ip("12.0.0.1")), Access::Limit);
    }
}
