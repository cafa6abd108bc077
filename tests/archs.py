"""Tiny random-weight models of the authors' two architectures (Gemma-2, Qwen2), built offline by the tests.

Each has its real chat template (the public Jinja text of google/gemma-2-2b-it and Qwen/Qwen2.5-3B-Instruct), a
small byte-level BPE tokenizer trained here on the catalog and prompt wording with the architecture's special
tokens, a generation config naming the same stop tokens as the real one, and the features where the architecture
differs from the Llama demo: Gemma-2's embedding scale, attention and final logit soft-capping, query
pre-attention scalar, alternating sliding-window layers and (1 + w) final norm; Qwen2's q/k/v biases.
Head size 32 (vLLM's CPU attention supports it). ``authors_adapter`` writes a LoRA adapter in the authors' layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from r2ec.catalog import Catalog
from r2ec.prompts import item_text
from r2ec.templates import domain_templates

# tokenizer_config.json "chat_template" of google/gemma-2-2b-it (rejects a system role; assistant -> "model").
GEMMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

# tokenizer_config.json "chat_template" of Qwen/Qwen2.5-3B-Instruct (inserts its default system prompt).
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are '
    'provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    '    {%- for tool in tools %}\n        {{- "\\n" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n'
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments '
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}\n            {{- tool_call.name }}\n'
    '            {{- \'", "arguments": \' }}\n            {{- tool_call.arguments | tojson }}\n'
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)

AUTHORS_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _corpus(catalog: Catalog) -> list[str]:
    lines = []
    for domain in ("movies", "movies_evidence"):
        t = domain_templates(domain)
        lines += [t.user_prompt, t.item_prompt, t.answer, "Step 1: you rated", "viewers went on to", "Best match:"]
        lines += [item_text(it, t) for it in catalog]
    lines += [f"{d}d {h}.5h ago: ({r}.0)" for d in range(10) for h in range(3) for r in range(1, 6)]
    return lines


def build_tokenizer(out: Path, catalog: Catalog, arch: str) -> Any:
    """A byte-level BPE tokenizer (any text encodes) with ``arch``'s special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if arch == "gemma2":
        special = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
        names: dict[str, Any] = {
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"],
        }
        template = GEMMA2_CHAT_TEMPLATE
    elif arch == "qwen2":
        special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        names = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "additional_special_tokens": special[1:]}
        template = QWEN25_CHAT_TEMPLATE
    else:
        raise ValueError(arch)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(catalog), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **names)
    fast.chat_template = template
    fast.save_pretrained(str(out))
    return fast


def build_tiny_arch(out: Path, catalog: Catalog, arch: str, seed: int = 0) -> Path:
    """``arch`` in {gemma2, qwen2}: a 2-layer random model with the real architecture's distinctive parts."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer(out, catalog, arch)
    torch.manual_seed(seed)
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "initializer_range": 0.2,
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    model: Any
    config: Any
    if arch == "gemma2":
        end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
        config = Gemma2Config(
            **common,
            intermediate_size=384,  # not Qwen's 256: an adapter of one must not fit the other
            head_dim=32,
            query_pre_attn_scalar=32,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            sliding_window=4096,  # the real value; layers alternate sliding / full as in the checkpoint
            hidden_activation="gelu_pytorch_tanh",
            bos_token_id=tokenizer.bos_token_id,
        )
        model = Gemma2ForCausalLM(config)
        generation = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=[tokenizer.eos_token_id, end_of_turn],
            pad_token_id=tokenizer.pad_token_id,
        )
    else:
        config = Qwen2Config(**common, intermediate_size=256, use_sliding_window=False)
        model = Qwen2ForCausalLM(config)
        endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        generation = GenerationConfig(
            bos_token_id=endoftext, eos_token_id=[tokenizer.eos_token_id, endoftext], pad_token_id=endoftext
        )
    model.eval().save_pretrained(str(out))
    generation.save_pretrained(str(out))
    return out


def authors_adapter(
    model_dir: Path, out: Path, rank: int = 4, alpha: int = 128, targets: list[str] | None = None, seed: int = 1
) -> Path:
    """A LoRA adapter in the authors' layout (peft's adapter_config.json + adapter_model.safetensors), non-zero."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    cfg = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=targets or AUTHORS_TARGETS,
        lora_dropout=0.05,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, cfg)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.002)
    model.save_pretrained(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    hub = {"Gemma2ForCausalLM": "google/gemma-2-2b-it", "Qwen2ForCausalLM": "Qwen/Qwen2.5-3B-Instruct"}
    architecture = (base.config.architectures or [""])[0]
    config["base_model_name_or_path"] = hub.get(architecture, config["base_model_name_or_path"])
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out
