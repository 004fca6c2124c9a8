//! The console's pages, one module each.

pub mod audit;
pub mod grants;
pub mod inbox;
pub mod new_request;
pub mod overview;
pub mod parts;
pub mod requests;
pub mod reviews;
pub mod signin;
