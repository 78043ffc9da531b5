//! [`AccessList`]: clients that are never limited, and clients that are
//! refused, by IP range or by key; changeable at runtime.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use http::request::Parts;
use ipnet::IpNet;
use prefix_trie::joint::JointPrefixSet;

use super::store::StoreError;
use super::sync::{self, Link, Mirror};
use crate::key::{canonical_net, ClientIp, Key};
use crate::problem::Problem;

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
/// [`Key::secret`], a user id…). A range or a key is on one list at a
/// time (the last change wins); between overlapping ranges, **deny wins**.
/// Clones share the lists, so a clone kept by an admin endpoint changes
/// what the layer sees at once.
///
/// With a backend that shares settings (Redis), the layer attaches the
/// lists to it when built: the ranges and keys given to the builder forms
/// are written to the server, changes go to the server before they apply
/// here, and every layer on that server reloads them within its
/// [`sync_interval`](crate::RateLimitLayerBuilder::sync_interval). That is
/// why the runtime changes are `async` and can fail: a change the server
/// did not take changes nothing.
///
/// The client address is resolved by a [`ClientIp`] (peer address by
/// default; give it your trusted proxies with [`AccessList::client_ip`]).
///
/// ```
/// use tollgate::{Quota, RateLimitLayer, settings::AccessList};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let access = AccessList::new()
///     .allowing(["10.0.0.0/8".parse()?])     // office: never limited
///     .denying(["203.0.113.0/24".parse()?]);  // refused with 403
/// let layer = RateLimitLayer::builder()
///     .quota(Quota::per_minute(60))
///     .access(access.clone())
///     .build()?;
/// // Later, at runtime:
/// access.deny_net("198.51.100.7/32".parse()?).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AccessList {
    inner: Arc<Inner>,
    client_ip: ClientIp,
}

#[derive(Default)]
struct Inner {
    lists: RwLock<Lists>,
    link: OnceLock<Link>,
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
            inner: Arc::default(),
            client_ip: ClientIp::new(),
        }
    }

    /// Resolves client addresses with `client_ip` (e.g.
    /// `ClientIp::trusting([..])` behind a proxy).
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// Adds ranges to the allow list (builder form, this process only
    /// until a layer shares the lists through its backend).
    pub fn allowing(self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        for net in nets {
            self.write().set(Entry::net(net), Access::Allow);
        }
        self
    }

    /// Adds ranges to the deny list (builder form).
    pub fn denying(self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        for net in nets {
            self.write().set(Entry::net(net), Access::Deny);
        }
        self
    }

    /// Never limits clients in `net`.
    pub async fn allow_net(&self, net: IpNet) -> Result<(), StoreError> {
        self.change(Entry::net(net), Access::Allow).await
    }

    /// Refuses clients in `net`.
    pub async fn deny_net(&self, net: IpNet) -> Result<(), StoreError> {
        self.change(Entry::net(net), Access::Deny).await
    }

    /// Takes `net` (exactly that range) off the lists.
    pub async fn remove_net(&self, net: IpNet) -> Result<(), StoreError> {
        self.change(Entry::net(net), Access::Limit).await
    }

    /// Never limits requests whose key is `key`.
    pub async fn allow_key(&self, key: Key) -> Result<(), StoreError> {
        self.change(Entry::Key(key), Access::Allow).await
    }

    /// Refuses requests whose key is `key`.
    pub async fn deny_key(&self, key: Key) -> Result<(), StoreError> {
        self.change(Entry::Key(key), Access::Deny).await
    }

    /// Takes `key` off the lists.
    pub async fn remove_key(&self, key: &Key) -> Result<(), StoreError> {
        self.change(Entry::Key(key.clone()), Access::Limit).await
    }

    /// Writes a change to the shared store (if any), then applies it here.
    async fn change(&self, entry: Entry, access: Access) -> Result<(), StoreError> {
        let value = match access {
            Access::Allow => Some("allow"),
            Access::Deny => Some("deny"),
            Access::Limit => None,
        };
        sync::write(self, &entry.field(), value).await?;
        self.write().set(entry, access);
        Ok(())
    }

    /// How many ranges and keys are listed, allowed and denied together.
    pub fn len(&self) -> usize {
        let l = self.read();
        l.allow_nets.len() + l.deny_nets.len() + l.allow_keys.len() + l.deny_keys.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        self.inner
            .lists
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Lists> {
        self.inner
            .lists
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One listed range or key.
enum Entry {
    Net(IpNet),
    Key(Key),
}

impl Entry {
    /// A range in the form client addresses are compared in: an
    /// IPv4-mapped IPv6 range (`::ffff:198.51.100.0/120`) as the IPv4
    /// range it maps, host bits cleared. `ClientIp` turns mapped client
    /// addresses into IPv4, so a range stored in mapped form would never
    /// match; every way in (builder, runtime change, shared store) goes
    /// through here.
    fn net(net: IpNet) -> Entry {
        Entry::Net(canonical_net(net))
    }

    /// The entry's field in a shared store: `net:<cidr>` or `key:<hex>`.
    fn field(&self) -> String {
        match self {
            Entry::Net(net) => format!("net:{net}"),
            Entry::Key(key) => format!("key:{}", sync::hex(key.as_bytes())),
        }
    }

    fn parse(field: &str) -> Option<Entry> {
        if let Some(net) = field.strip_prefix("net:") {
            return net.parse::<IpNet>().ok().map(Entry::net);
        }
        let key = sync::unhex(field.strip_prefix("key:")?)?;
        Some(Entry::Key(Key::from_bytes(&key)))
    }
}

impl Lists {
    /// Puts `entry` on the list `access` names (`Limit`: on none).
    fn set(&mut self, entry: Entry, access: Access) {
        match entry {
            Entry::Net(net) => self.set_net(net, access),
            Entry::Key(key) => {
                self.allow_keys.remove(&key);
                self.deny_keys.remove(&key);
                match access {
                    Access::Allow => self.allow_keys.insert(key),
                    Access::Deny => self.deny_keys.insert(key),
                    Access::Limit => false,
                };
            }
        }
    }

    fn set_net(&mut self, net: IpNet, access: Access) {
        self.allow_nets.remove(&net);
        self.deny_nets.remove(&net);
        match access {
            Access::Allow => self.allow_nets.insert(net),
            Access::Deny => self.deny_nets.insert(net),
            Access::Limit => false,
        };
    }

    fn entries(&self) -> Vec<(String, String)> {
        let nets = |set: &JointPrefixSet<IpNet>, v: &str| -> Vec<(String, String)> {
            set.iter()
                .map(|n| (Entry::Net(n).field(), v.to_owned()))
                .collect()
        };
        let keys = |set: &HashSet<Key>, v: &str| -> Vec<(String, String)> {
            set.iter()
                .map(|k| (Entry::Key(k.clone()).field(), v.to_owned()))
                .collect()
        };
        let mut out = nets(&self.allow_nets, "allow");
        out.extend(nets(&self.deny_nets, "deny"));
        out.extend(keys(&self.allow_keys, "allow"));
        out.extend(keys(&self.deny_keys, "deny"));
        out
    }
}

impl Mirror for AccessList {
    fn map(&self) -> &'static str {
        "access"
    }

    fn link(&self) -> &OnceLock<Link> {
        &self.inner.link
    }

    fn snapshot(&self) -> Vec<(String, String)> {
        self.read().entries()
    }

    fn replace(&self, entries: Vec<(String, String)>) {
        let mut lists = Lists::default();
        for (field, value) in entries {
            let access = match value.as_str() {
                "allow" => Access::Allow,
                "deny" => Access::Deny,
                _ => Access::Limit,
            };
            match Entry::parse(&field) {
                Some(entry) if access != Access::Limit => lists.set(entry, access),
                _ => tracing::debug!(
                    field,
                    value,
                    "tollgate: ignoring a malformed shared access-list entry"
                ),
            }
        }
        *self.write() = lists;
    }
}

/// The answer to a client on the deny list.
pub(crate) fn forbidden() -> Problem {
    Problem::new(
        http::StatusCode::FORBIDDEN,
        "Forbidden",
        "This client is not allowed to use this service.",
    )
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

    #[tokio::test]
    async fn ranges_in_ipv4_mapped_form_match_ipv4_clients_however_they_are_listed() {
        // Builder forms.
        let a = AccessList::new()
            .denying([net("::ffff:198.51.100.0/120")])
            .allowing([net("::ffff:127.0.0.51/128")]);
        assert_eq!(a.check_ip(ip("198.51.100.9")), Access::Deny);
        assert_eq!(a.check_ip(ip("::ffff:198.51.100.9")), Access::Deny);
        assert_eq!(a.check_ip(ip("127.0.0.51")), Access::Allow);
        assert_eq!(a.check_ip(ip("198.51.101.9")), Access::Limit);
        // Runtime changes, and removal by either form.
        let b = AccessList::new();
        b.deny_net(net("::ffff:203.0.113.0/120")).await.unwrap();
        assert_eq!(b.check_ip(ip("203.0.113.7")), Access::Deny);
        b.remove_net(net("203.0.113.0/24")).await.unwrap();
        assert_eq!(b.check_ip(ip("203.0.113.7")), Access::Limit);
        assert!(b.is_empty());
        // What another server reads from a shared store.
        let Some(Entry::Net(shared)) = Entry::parse("net:::ffff:192.0.2.0/120") else {
            panic!("a mapped range parses");
        };
        assert_eq!(shared, net("192.0.2.0/24"));
        // And what this one writes there is the IPv4 form.
        assert_eq!(
            Entry::net(net("::ffff:192.0.2.1/128")).field(),
            "net:192.0.2.1/32"
        );
    }

    #[tokio::test]
    async fn changes_at_runtime_are_seen_by_every_clone() {
        let a = AccessList::new();
        let admin = a.clone();
        admin.deny_net(net("192.0.2.0/24")).await.unwrap();
        assert_eq!(a.check_ip(ip("192.0.2.9")), Access::Deny);
        admin.remove_net(net("192.0.2.0/24")).await.unwrap();
        assert_eq!(a.check_ip(ip("192.0.2.9")), Access::Limit);
        admin.allow_key(Key::from("vip")).await.unwrap();
        assert_eq!(a.check_key(&Key::from("vip")), Access::Allow);
        admin.deny_key(Key::from("vip")).await.unwrap();
        assert_eq!(a.check_key(&Key::from("vip")), Access::Deny);
        admin.remove_key(&Key::from("vip")).await.unwrap();
        assert_eq!(a.check_key(&Key::from("vip")), Access::Limit);
        assert!(a.is_empty());
    }

    #[tokio::test]
    async fn the_last_change_to_a_range_wins() {
        let a = AccessList::new().allowing([net("192.0.2.0/24")]);
        a.deny_net(net("192.0.2.0/24")).await.unwrap();
        assert_eq!(a.check_ip(ip("192.0.2.1")), Access::Deny);
        a.allow_net(net("192.0.2.0/24")).await.unwrap();
        assert_eq!(a.check_ip(ip("192.0.2.1")), Access::Allow);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn the_store_format_round_trips_and_junk_is_ignored() {
        let a = AccessList::new()
            .allowing([net("10.0.0.0/8")])
            .denying([net("2001:db8::/32")]);
        let mut entries = a.snapshot();
        a.write()
            .set(Entry::Key(Key::from(&b"\xffk"[..])), Access::Deny);
        entries.extend(
            a.snapshot()
                .into_iter()
                .filter(|(f, _)| f.starts_with("key:")),
        );
        entries.push(("net:not-a-net".into(), "deny".into()));
        entries.push(("key:zz".into(), "deny".into()));
        entries.push(("net:192.0.2.0/24".into(), "maybe".into()));
        let b = AccessList::new();
        b.replace(entries);
        assert_eq!(b.len(), 3);
        assert_eq!(b.check_ip(ip("10.1.1.1")), Access::Allow);
        assert_eq!(b.check_ip(ip("2001:db8::1")), Access::Deny);
        assert_eq!(b.check_key(&Key::from(&b"\xffk"[..])), Access::Deny);
        assert_eq!(b.check_ip(ip("192.0.2.1")), Access::Limit);
    }

    #[test]
    fn a_hundred_thousand_ranges_answer_correctly() {
        let a = AccessList::new();
        let a = a.denying((0..100_000u32).map(|i| {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8));
            IpNet::V4(ipnet::Ipv4Net::new(addr, 24).unwrap())
        }));
        assert_eq!(a.check_ip(ip("10.0.5.7")), Access::Deny);
        assert_eq!(a.check_ip(ip("12.0.0.1")), Access::Limit);
    }
}
