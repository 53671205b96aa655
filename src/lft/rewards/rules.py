"""Rule rewards: plain functions of the sampled tokens, for tests and toy runs (`reward.fn._target_=...`)."""


class TokenShare:
    """The share of a response's tokens that equal `token_id` (a response of no tokens scores 0).

    A class, so a run folder's config may name it and still resume without trust_targets (lft/runs/targets.py)."""

    def __init__(self, token_id: int):
        self.token_id = int(token_id)

    def __call__(self, prompts: list[str], responses: list[str], response_ids: list[list[int]]) -> list[float]:
        return [sum(t == self.token_id for t in ids) / len(ids) if ids else 0.0 for ids in response_ids]
