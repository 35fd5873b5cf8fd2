//! anon-node with hasher-api: the `anonymise` consumer and the binary's logs.

mod logs;
mod service;
