//! The JSON shapes of both API surfaces, with no behaviour: serde types only. The HTTP layer renders
//! domain records into these; tests and clients deserialize them.

pub mod gemini;
pub mod generate;
pub mod import;
pub mod openai;
