# SPDX-License-Identifier: MIT
# Real Hugging Face layouts for the CLI and mount tests (sourced, POSIX sh;
# needs $GEN, the gen_model tool).
#
# hf_dir IN.safetensors DIR: DIR laid out as a clone of a Hugging Face
# model repo, 15 files: IN in 3 shards with model.safetensors.index.json,
# config.json, generation_config.json, tokenizer.json,
# tokenizer_config.json, special_tokens_map.json, vocab.json, merges.txt,
# README.md, .gitattributes, and original/ with params.json and
# tokenizer.model (as Meta-Llama-3 ships it); plus .git/HEAD, which a
# store must skip. Returns non-zero when gen_model fails.
hf_dir() {
	"$GEN" shard "$1" "$2" --shards 3 >/dev/null 2>&1 || return 1
	printf '{"bos_token_id": 1, "eos_token_id": 2}\n' \
		>"$2/generation_config.json"
	printf '{"model_max_length": 512}\n' >"$2/tokenizer_config.json"
	printf '{"bos_token": "<s>", "eos_token": "</s>"}\n' \
		>"$2/special_tokens_map.json"
	printf '{"<unk>": 0, "<s>": 1, "</s>": 2}\n' >"$2/vocab.json"
	printf '#version: 0.2\na b\n' >"$2/merges.txt"
	printf -- '---\nlicense: mit\n---\n# A model\n' >"$2/README.md"
	printf '*.safetensors filter=lfs diff=lfs merge=lfs -text\n' \
		>"$2/.gitattributes"
	mkdir -p "$2/original" "$2/.git"
	printf '{"dim": 64, "n_layers": 5}\n' >"$2/original/params.json"
	head -c 3000 /dev/urandom >"$2/original/tokenizer.model"
	printf 'ref: refs/heads/main\n' >"$2/.git/HEAD"
}

# hf_paths DIR: the files a store keeps of DIR (all but .git/), sorted,
# one relative path a line.
hf_paths() {
	(cd "$1" && find . -path ./.git -prune -o -type f -print |
		sed 's|^\./||' | sort)
}
