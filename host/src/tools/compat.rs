//! Earlier versions of the plugin ABI, served by today's tools: each call of a 0.1.0
//! component is converted to the current types and handled by the same code (grant
//! checks, limits, metrics) as a current component's call. Nothing here decides
//! anything; a tool's behaviour lives in its own file.

use super::Tools;
use crate::wit::agenthook::plugin as current;
use crate::wit::v0_1::agenthook::plugin::{config, email, events, http, kv, log, types};

type V1Result<T> = Result<T, types::ToolError>;

fn old<T>(r: Result<T, current::types::ToolError>) -> V1Result<T> {
    r.map_err(Into::into)
}

impl types::Host for Tools {}

impl log::Host for Tools {
    async fn write(&mut self, level: log::Level, message: String) {
        current::log::Host::write(self, level.into(), message).await
    }
}

impl config::Host for Tools {
    async fn get(&mut self, key: String) -> Option<String> {
        current::config::Host::get(self, key).await
    }
}

impl kv::Host for Tools {
    async fn get(&mut self, key: String) -> V1Result<Option<Vec<u8>>> {
        old(current::kv::Host::get(self, key).await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> V1Result<()> {
        old(current::kv::Host::set(self, key, value).await)
    }

    async fn delete(&mut self, key: String) -> V1Result<bool> {
        old(current::kv::Host::delete(self, key).await)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> V1Result<Vec<String>> {
        old(current::kv::Host::list_keys(self, prefix, start_after, limit).await)
    }
}

impl http::Host for Tools {
    async fn fetch(&mut self, request: http::Request) -> V1Result<http::Response> {
        old(current::http::Host::fetch(self, request.into()).await).map(Into::into)
    }
}

impl email::Host for Tools {
    async fn send(&mut self, message: email::Message) -> V1Result<String> {
        old(current::email::Host::send(self, message.into()).await)
    }
}

impl events::Host for Tools {
    async fn emit(
        &mut self,
        event_type: String,
        json: String,
        key: Option<String>,
    ) -> V1Result<String> {
        old(current::events::Host::emit(self, event_type, json, key).await)
    }
}
