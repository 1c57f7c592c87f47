//! The API families' conventions, below the surfaces that speak them: Google's (`google`) and OpenAI's
//! (`openai`, which the import API also speaks). A surface imports its family's dialect, never another
//! surface; a dialect imports no surface.

pub mod google;
pub mod openai;
