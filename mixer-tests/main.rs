//! Integration and system tests: real UDP on 127.0.0.1 against a running node.

mod support;
