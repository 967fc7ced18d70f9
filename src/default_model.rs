//! The model used when neither `--model` nor `TOKENLENS_MODEL` names one.

use crate::error::{Error, Result};
use crate::model_dir::ModelFiles;

/// Files of the bundled default sentiment model.
pub fn files() -> Result<ModelFiles> {
    Err(Error::Usage(
        "no --model given and no bundled default model in this build; pass --model DIR \
         (a Hugging Face BertForSequenceClassification directory) or set TOKENLENS_MODEL"
            .into(),
    ))
}
