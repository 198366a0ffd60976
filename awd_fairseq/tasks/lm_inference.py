"""Generation and sentence scoring for `awd_language_modeling` (fairseq-interactive, the hub
interface's `sample()` / `score()`). Mixed into the task class."""


class LMInferenceMixin:
    pass
