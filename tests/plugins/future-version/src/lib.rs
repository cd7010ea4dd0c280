//! A plugin built against `ersatz:plugin@0.4.0` (a copy of the contract with
//! only the version raised), so the host's version check can be shown.

wit_bindgen::generate!({ world: "metadata-plugin", path: "wit" });

use ersatz::plugin::types::{Request, Response};
use exports::ersatz::plugin::provider::Guest;

struct FutureVersion;

impl Guest for FutureVersion {
    fn resolve(_: Request) -> Result<Response, String> {
        Ok(Response::NotFound)
    }
}

export!(FutureVersion);
