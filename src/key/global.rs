//! [`Global`] (one key for everybody) and [`from_fn`] (any closure).

use http::request::Parts;

use super::{Extracted, Key, KeyExtractor};

/// One key shared by every request: a limit on the whole service.
///
/// ```
/// use tollgate::{Quota, RateLimitLayer, key::Global};
///
/// let layer = RateLimitLayer::builder()
///     .key(Global)
///     .quota(Quota::per_second(1000))
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl KeyExtractor for Global {
    fn extract(&self, _: &Parts) -> Extracted {
        Extracted::Key(Key::from_bytes(b"global"))
    }
}

/// An extractor from a closure; see [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F>(F);

impl<F> std::fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromFn")
    }
}

/// An extractor from a closure returning [`Extracted`], or an
/// `Option<Key>` where `None` means "skip limiting".
///
/// ```
/// use tollgate::key::{Key, self};
///
/// let by_tenant = key::from_fn(|parts: &http::request::Parts| {
///     parts.headers.get("x-tenant").map(|v| Key::from_bytes(v.as_bytes()))
/// });
/// ```
pub fn from_fn<F, R>(f: F) -> FromFn<F>
where
    F: Fn(&Parts) -> R + Clone + Send + Sync + 'static,
    R: Into<Extracted>,
{
    FromFn(f)
}

impl<F, R> KeyExtractor for FromFn<F>
where
    F: Fn(&Parts) -> R + Clone + Send + Sync + 'static,
    R: Into<Extracted>,
{
    fn extract(&self, parts: &Parts) -> Extracted {
        (self.0)(parts).into()
    }
}

impl From<Option<Key>> for Extracted {
    fn from(k: Option<Key>) -> Self {
        match k {
            Some(k) => Extracted::Key(k),
            None => Extracted::Skip,
        }
    }
}

impl From<Key> for Extracted {
    fn from(k: Key) -> Self {
        Extracted::Key(k)
    }
}
