//! Keys from what the app already knows: the user its auth middleware put
//! in the request extensions ([`User`]), the route ([`MatchedRoute`]), the method
//! ([`RequestMethod`]).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;

use super::{Extracted, Key, KeyExtractor, OnMissing};
use crate::problem::Problem;

/// Keys by a value of type `T` that the app's own authentication middleware
/// inserted into the request extensions (run it before this layer).
///
/// No `T` in the extensions means the request is not authenticated:
/// [`Extracted::Missing`] with a `401` problem, the answer unless
/// [`User::on_missing`] says to skip, or `.or(..)` falls back (typically
/// to [`ClientIp`](super::ClientIp)).
///
/// ```
/// use tollgate::key::{ClientIp, KeyExtractorExt, User};
///
/// #[derive(Clone)]
/// struct CurrentUser { id: u64 }
///
/// // Signed-in users by id, everybody else by IP.
/// let key = User::new(|u: &CurrentUser| u.id).or(ClientIp::new());
/// ```
pub struct User<T, F> {
    to_key: Arc<F>,
    on_missing: OnMissing,
    _user: PhantomData<fn(&T)>,
}

impl<T, F> Clone for User<T, F> {
    fn clone(&self) -> Self {
        User {
            to_key: self.to_key.clone(),
            on_missing: self.on_missing,
            _user: PhantomData,
        }
    }
}

impl<T, F> fmt::Debug for User<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("type", &std::any::type_name::<T>())
            .field("on_missing", &self.on_missing)
            .finish()
    }
}

impl<T, F, K> User<T, F>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> K + Send + Sync + 'static,
    K: Into<Key>,
{
    /// Keys by `to_key(&user)` for the `T` in the request extensions.
    pub fn new(to_key: F) -> Self {
        User {
            to_key: Arc::new(to_key),
            on_missing: OnMissing::Reject,
            _user: PhantomData,
        }
    }

    /// What an unauthenticated request gets (default: 401).
    pub fn on_missing(mut self, on_missing: OnMissing) -> Self {
        self.on_missing = on_missing;
        self
    }
}

impl<T, F, K> KeyExtractor for User<T, F>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> K + Send + Sync + 'static,
    K: Into<Key>,
{
    fn extract(&self, parts: &Parts) -> Extracted {
        match parts.extensions.get::<T>() {
            Some(user) => Extracted::Key((self.to_key)(user).into()),
            None => Extracted::Missing(Problem::new(
                StatusCode::UNAUTHORIZED,
                "Not authenticated",
                "This endpoint is limited per user; sign in first.",
            )),
        }
    }

    fn on_missing(&self) -> OnMissing {
        self.on_missing
    }
}

/// Keys by the route: axum's `MatchedPath` (the pattern, `/items/{id}`),
/// never the raw path, so `/items/1` and `/items/2` are one route. A request
/// that matched no route (a 404, or a service outside axum) is keyed as one
/// "unmatched" route, so floods of random paths are limited too.
///
/// Combine it with a client key for a per-client, per-route limit:
/// `(ClientIp::new(), MatchedRoute)`.
///
/// ```
/// use tollgate::key::{ClientIp, MatchedRoute};
///
/// let per_client_per_route = (ClientIp::new(), MatchedRoute);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchedRoute;

impl KeyExtractor for MatchedRoute {
    fn extract(&self, parts: &Parts) -> Extracted {
        #[cfg(feature = "axum")]
        if let Some(path) = parts.extensions.get::<axum::extract::MatchedPath>() {
            return Extracted::Key(Key::from(path.as_str()));
        }
        let _ = parts;
        Extracted::Key(Key::from_bytes(b"\xfeunmatched"))
    }
}

/// Keys by the HTTP method (`GET`, `POST`, …); combine it with another key
/// for per-method limits: `(ClientIp::new(), RequestMethod)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMethod;

impl KeyExtractor for RequestMethod {
    fn extract(&self, parts: &Parts) -> Extracted {
        Extracted::Key(Key::from(parts.method.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct CurrentUser(u64);

    fn parts() -> Parts {
        http::Request::post("/items/7")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn a_user_in_the_extensions_is_the_key() {
        let mut p = parts();
        p.extensions.insert(CurrentUser(42));
        let e = User::new(|u: &CurrentUser| u.0).extract(&p);
        assert!(matches!(e, Extracted::Key(k) if k == Key::from(42u64)));
    }

    #[test]
    fn no_user_is_a_401_by_default_or_skipped_on_request() {
        let u = User::new(|u: &CurrentUser| u.0);
        assert!(
            matches!(u.extract(&parts()), Extracted::Missing(p) if p.status() == StatusCode::UNAUTHORIZED)
        );
        assert_eq!(KeyExtractor::on_missing(&u), OnMissing::Reject);
        assert_eq!(
            u.clone().on_missing(OnMissing::Skip).on_missing,
            OnMissing::Skip
        );
    }

    #[test]
    fn method_and_unmatched_route_keys() {
        assert!(
            matches!(RequestMethod.extract(&parts()), Extracted::Key(k) if k == Key::from("POST"))
        );
        assert!(
            matches!(MatchedRoute.extract(&parts()), Extracted::Key(k) if k.as_bytes() == b"\xfeunmatched")
        );
    }
}
