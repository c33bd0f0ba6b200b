"""PRM scoring with a `vllm.LLM` engine: one request per step, prefix cached (the method is in
`vlprm.prm.scorer`'s docstring)."""

from __future__ import annotations

import math
import os
from typing import Sequence

from vlprm.prm.format import ASSISTANT_HEADER, LabelTokens, PRMSample, load_prm_processor, render_text
from vlprm.prm.settings import AUTO
from vlprm.prm.step_scores import StepScores, _check_mode, _error, outcome_sample, scorer_settings, unlabelled


class VLLMScorer:
    """PRM scoring with a `vllm.LLM` engine (see `vlprm.prm.scorer`'s docstring for the method).

    Args:
        model: PRM directory or hub id.
        mode: "one_pass"/"per_step" (the same computation here: one request per step, prefix
            cached) or "outcome".
        settings, system_prompt, step_suffix, min_pixels, max_pixels: as for `HFScorer`.
        max_model_len, engine_kwargs: the engine settings, passed through
            `VLLMGenerator` so a policy generator with the same settings shares the engine.
    """

    name = "vllm"

    def __init__(self, model: str | os.PathLike, *, mode: str = "one_pass", settings=None,
                 system_prompt: str | None = AUTO, step_suffix: str | None = None,
                 max_model_len: int = 8192, min_pixels: int | None = None, max_pixels: int | None = None,
                 **engine_kwargs):
        from vlprm.backends.vllm_backend import VLLMGenerator

        self.model_path = os.fspath(model)
        self.mode = _check_mode(mode)
        self.settings = scorer_settings(self.model_path, settings, system_prompt=system_prompt,
                                        step_suffix=step_suffix, min_pixels=min_pixels, max_pixels=max_pixels)
        gen = VLLMGenerator(self.model_path, max_model_len=max_model_len, min_pixels=self.settings.min_pixels,
                            max_pixels=self.settings.max_pixels, **engine_kwargs)
        self.llm = gen.llm
        self.max_model_len = max_model_len
        # The HF processor renders the conversation exactly as HFScorer does (same chat template).
        self.processor = load_prm_processor(self.model_path, self.settings.min_pixels, self.settings.max_pixels)
        self.tokens = LabelTokens.for_settings(self.processor.tokenizer, self.settings)

    def _prompts(self, sample: PRMSample) -> list[str]:
        """Prompt k = the conversation cut right after step k's assistant header."""
        text = render_text(self.processor, sample, settings=self.settings)
        cuts, at = [], text.find(ASSISTANT_HEADER)
        while at >= 0:
            cuts.append(at + len(ASSISTANT_HEADER))
            at = text.find(ASSISTANT_HEADER, at + 1)
        if len(cuts) != len(sample.steps):
            raise ValueError(f"PRM sample {sample.id!r}: {len(cuts)} assistant turns rendered for "
                             f"{len(sample.steps)} steps; the chat template does not render ChatML turns")
        return [text[:c] for c in cuts]

    def _generate(self, requests: list[dict]):
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False,
                                logprob_token_ids=[self.tokens.plus_id, self.tokens.minus_id])
        return self.llm.generate(requests, params, use_tqdm=False)

    def _read(self, sample: PRMSample, outs) -> StepScores:
        header = self.tokens.header_ids
        p_plus = []
        for o in outs:
            if list(o.prompt_token_ids[-len(header):]) != header:
                raise ValueError(f"PRM sample {sample.id!r}: a step prompt does not end with the "
                                 "assistant header after tokenization")
            lp = o.outputs[0].logprobs[0]
            if self.tokens.plus_id not in lp or self.tokens.minus_id not in lp:
                raise RuntimeError("vLLM returned no logprobs for the '+'/'-' label tokens "
                                   "(logprob_token_ids unsupported by this engine build)")
            a, b = lp[self.tokens.plus_id].logprob, lp[self.tokens.minus_id].logprob
            p_plus.append(1.0 / (1.0 + math.exp(b - a)))
        # num_tokens: the conversation up to the last label, as for HFScorer one pass (the
        # backend-independent measure); computed_tokens: what the engine ran after cache hits.
        computed = sum(len(o.prompt_token_ids) - (o.num_cached_tokens or 0) for o in outs)
        return StepScores(p_plus=p_plus, num_tokens=max(len(o.prompt_token_ids) for o in outs),
                          id=sample.id, mode=self.mode,
                          extra={"computed_tokens": computed,
                                 "prompt_tokens": sum(len(o.prompt_token_ids) for o in outs)})

    def score(self, samples: Sequence[PRMSample], *, progress: bool = False) -> list[StepScores]:
        """Score every sample; results are in sample order, failures carry `error`."""
        from vlprm.backends.base import load_image

        results: list[StepScores | None] = [None] * len(samples)
        requests: list[dict] = []
        owner: list[tuple[int, int]] = []  # (sample index, step index) per request
        for i, s in enumerate(samples):
            try:
                sample = outcome_sample(s) if self.mode == "outcome" else unlabelled(s)
                images = [load_image(p) for p in sample.images]
                prompts = self._prompts(sample)
            except (ValueError, OSError) as e:
                results[i] = StepScores(p_plus=None, error=_error(e), id=s.id, mode=self.mode)
                continue
            # Longest prompt first: it fills the prefix cache the shorter ones then read.
            order = [len(prompts) - 1] + list(range(len(prompts) - 1))
            for k in order:
                req: dict = {"prompt": prompts[k]}
                if images:
                    req["multi_modal_data"] = {"image": images}
                requests.append(req)
                owner.append((i, k))
        by_sample: dict[int, list] = {}
        try:
            outs = self._generate(requests) if requests else []
        except Exception:  # noqa: BLE001 - one bad request fails vLLM's whole batch: isolate it
            outs = None
        if outs is not None:
            for (i, k), o in zip(owner, outs):
                by_sample.setdefault(i, {})[k] = o
        else:
            for i in dict.fromkeys(i for i, _ in owner):
                mine = [(k, r) for (j, k), r in zip(owner, requests) if j == i]
                try:
                    got = self._generate([r for _, r in mine])
                except Exception as e:  # noqa: BLE001 - reported per sample
                    results[i] = StepScores(p_plus=None, error=_error(e), id=samples[i].id, mode=self.mode)
                    continue
                by_sample[i] = {k: o for (k, _), o in zip(mine, got)}
        for i, outs_i in by_sample.items():
            try:
                results[i] = self._read(samples[i], [outs_i[k] for k in sorted(outs_i)])
            except (ValueError, RuntimeError) as e:
                results[i] = StepScores(p_plus=None, error=_error(e), id=samples[i].id, mode=self.mode)
        return results  # type: ignore[return-value]
