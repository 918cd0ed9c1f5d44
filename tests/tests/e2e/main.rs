//! The integration tests, in one test binary: the real gateway on `127.0.0.1:0` against the three simulators.

mod accounts;
mod audit;
mod conformance;
mod gateway;
mod redaction;
mod shields;
mod tls;
mod trusted;
