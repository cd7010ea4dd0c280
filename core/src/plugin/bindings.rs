//! Host bindings for `wit/plugin.wit`, one module per world; the credential
//! world reuses the metadata world's types and host interface.

pub mod metadata {
    wasmtime::component::bindgen!({
        world: "metadata-plugin",
        path: "../wit",
        exports: { default: async },
    });
}

pub mod credential {
    wasmtime::component::bindgen!({
        world: "credential-plugin",
        path: "../wit",
        exports: { default: async },
        with: {
            "ersatz:plugin/types": super::metadata::ersatz::plugin::types,
            "ersatz:plugin/host": super::metadata::ersatz::plugin::host,
        },
    });
}

pub use metadata::ersatz::plugin::{host, types};

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "ersatz:plugin";
pub const WIT_VERSION: &str = "0.1.0";
