//! Host bindings for each supported version of the contract in `wit/`, one
//! module per version and world; a credential world reuses its version's
//! metadata-world types and host interface.

macro_rules! contract {
    ($version:ident, $path:literal) => {
        pub mod $version {
            pub mod metadata {
                wasmtime::component::bindgen!({
                    world: "metadata-plugin",
                    path: $path,
                    exports: { default: async },
                });
            }

            pub mod credential {
                wasmtime::component::bindgen!({
                    world: "credential-plugin",
                    path: $path,
                    exports: { default: async },
                    with: {
                        "ersatz:plugin/types": super::metadata::ersatz::plugin::types,
                        "ersatz:plugin/host": super::metadata::ersatz::plugin::host,
                    },
                });
            }

            pub use metadata::ersatz::plugin::{host, types};
        }
    };
}

contract!(v0_1, "../wit/v0.1.0");
contract!(v0_2, "../wit/v0.2.0");

pub const WIT_PACKAGE: &str = "ersatz:plugin";
/// The versions this host implements, oldest first.
pub const WIT_VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];

/// A 0.1.0 plugin sees the same request...
impl From<v0_2::types::Request> for v0_1::types::Request {
    fn from(r: v0_2::types::Request) -> Self {
        Self {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            client: r.client,
        }
    }
}

/// ...and its answers are never reused.
impl From<v0_1::types::Response> for v0_2::types::Answer {
    fn from(response: v0_1::types::Response) -> Self {
        use v0_1::types::Response as Old;
        use v0_2::types::{Leaf, Response};
        let response = match response {
            Old::Leaf(leaf) => Response::Leaf(Leaf {
                body: leaf.body,
                content_type: leaf.content_type,
            }),
            Old::Directory(entries) => Response::Directory(entries),
            Old::NotFound => Response::NotFound,
        };
        Self {
            response,
            max_age: 0,
        }
    }
}

impl From<v0_1::types::Credentials> for v0_2::types::Credentials {
    fn from(c: v0_1::types::Credentials) -> Self {
        Self {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expiration: c.expiration,
        }
    }
}
