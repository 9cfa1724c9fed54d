//! End-to-end tests: the real `nex` binary, a real nats-server, real wasm built from source.
//! One module per area.

mod auth;
mod bad_input;
mod cluster;
mod components;
mod deployments;
mod embedded;
mod functions;
mod guidance;
mod harness;
mod host_services;
mod http_policy;
mod javascript;
mod logs_events;
mod nodes;
mod ownership;
mod python;
mod scaffold;
mod security;
mod tenancy;
mod typescript;
mod upstream;
