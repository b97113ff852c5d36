"""`hitl vllm`: a local model server for `score` or `embed` in one command, sized to the GPUs."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from hitl.cli.context import Context, echo_err

DEFAULT_ASSUMPTION = "1x24"  # --print with no GPU here: the common single 24 GB card (RTX 3090/4090)


@click.command()
@click.option("--for", "purpose", type=click.Choice(["score", "embed"]),
              help="What the server is for: a vision-language model to score with, or an image encoder to "
                   "embed with (`--runner pooling`). [default: the named model's, else score]")
@click.option("--model", help="The model to serve (a Hugging Face name). [default: the best that fits the GPUs: "
                              "Qwen2.5-VL-7B or -3B; SigLIP so400m or CLIP ViT-L/14]")
@click.option("--gpus", help="GPUs to use, as nvidia-smi numbers them, e.g. 0,1 (one copy of the model on each). "
                             "[default: CUDA_VISIBLE_DEVICES, else every GPU the model fits]")
@click.option("--assume", metavar="COUNTxGB",
              help="Size for this many GPUs of this much memory, all free, instead of the GPUs found, e.g. 2x24 "
                   f"(a machine elsewhere). [default with --print and no GPU here: {DEFAULT_ASSUMPTION}]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets other machines in (add `-- --api-key KEY`).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--print", "print_only", is_flag=True,
              help="Show the `vllm serve` command and the `hitl` line that uses it; run nothing.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
              help="Seconds to wait until the server answers (a first start downloads the model).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False),
              help="vLLM's output. [default: vllm-PORT.log in $HITL_HOME, default the working directory]")
@click.argument("vllm_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- VLLM_FLAGS...]")
@click.pass_obj
def vllm(obj: Context, purpose, model, gpus, assume, host, port, print_only, timeout, log_path, vllm_args) -> None:
    """Run a vLLM server for `score` (or `embed`) on this machine's GPUs, sized to their free memory.

    Finds the GPUs (nvidia-smi, else nvidia-ml-py), chooses a model that fits when none is named
    and the flags (--data-parallel-size, --gpu-memory-utilization, ...), starts `vllm serve` ($VLLM_BIN,
    else `vllm`; `pip install "hero-hitl[vllm]"`), waits until it answers, prints the --base-url to
    score with, and stops it whole on Ctrl+C, SIGTERM or SIGHUP. Flags after `--` go to vLLM as they are.

    \b
    Examples:
        python -m hitl vllm --print
        python -m hitl vllm
        python -m hitl vllm --for embed --port 8001
        python -m hitl vllm --gpus 1 --model Qwen/Qwen2.5-VL-3B-Instruct -- --enforce-eager
        python -m hitl vllm --print --assume 2x24
    """
    from hitl.errors import HitlError
    from hitl.vllm import sizing
    from hitl.vllm.gpus import find_gpus

    if assume:
        found_gpus, pin = sizing.assumed_gpus(assume), False
        echo_err(f"Sized for {len(found_gpus)} GPU(s) of {found_gpus[0].total_mib / 1024:g} GB (--assume {assume})")
    else:
        found = find_gpus()
        found_gpus, pin = found.gpus, "CUDA_VISIBLE_DEVICES" in os.environ
        for problem in found.problems:
            echo_err(problem)
        if not found_gpus:
            no_gpu = f"no NVIDIA GPU found here ({found.source}); {sizing.WITHOUT_GPU[sizing.purpose_of(purpose, model)]}"
            if not print_only:
                raise HitlError(f"{no_gpu}; `hitl vllm --print` shows the command for a machine with one")
            echo_err(f"{no_gpu[0].upper()}{no_gpu[1:]}. Sized below for {DEFAULT_ASSUMPTION} (one GPU of 24 GB; "
                     f"--assume 2x24 for another machine).")
            found_gpus, pin = sizing.assumed_gpus(DEFAULT_ASSUMPTION), False
        else:
            echo_err(f"Found {len(found_gpus)} GPU(s) ({found.source}): " + "; ".join(map(str, found_gpus)))
    indices = (sizing.parse_indices(gpus, "--gpus") if gpus else
               sizing.parse_indices(os.environ["CUDA_VISIBLE_DEVICES"], "CUDA_VISIBLE_DEVICES") if pin else None)
    plan = sizing.plan_server(found_gpus, purpose, model, indices, host, port,
                              obj.settings.score.max_side, tuple(vllm_args), pin)
    for note in plan.notes:
        echo_err(note)
    on = ", ".join(str(g.index) for g in plan.gpus)
    if print_only:
        click.echo(f"# serve {plan.model} on GPU {on} ({plan.purpose}); `pip install \"hero-hitl[vllm]\"` first")
        click.echo(plan.command_line(os.environ.get("VLLM_BIN") or "vllm"))
        click.echo(f"# then {plan.purpose} with it:")
        click.echo(plan.client_line())
        return
    _serve(plan, Path(log_path) if log_path else None, timeout, on)


def _serve(plan, log_path: Path | None, timeout: float, on: str) -> None:
    """Start the server, say where it answers once it does, and keep it until stopped."""
    from hitl.errors import HitlError
    from hitl.process import stopped_on_exit
    from hitl.vllm import server

    log = log_path or server.default_log(plan.port)
    binary = server.find_binary()
    server.check_port(plan)
    with stopped_on_exit("vLLM", echo_err) as started:
        echo_err(f"Starting {plan.model} on GPU {on}: {plan.command_line(binary)}  (log: {log})")
        process = server.start(plan, binary, log)
        started.append(process)
        seconds = server.wait_until_ready(plan, process, log, timeout, echo_err)
        click.echo(f"vLLM is up at {plan.base_url} serving {plan.model} on GPU {on} ({seconds:.0f} s); log: {log}")
        click.echo(f"{plan.purpose.capitalize()} with: {plan.client_line()}")
        if plan.host in ("0.0.0.0", "::", ""):
            click.echo(f"From other machines: --base-url http://{socket.gethostname()}:{plan.port}/v1")
        if server.api_key(plan.extra):
            click.echo("with HITL_OPENAI_API_KEY set to the server's key")
        click.echo("Ctrl+C stops it.")
        code = process.wait()
        raise HitlError(f"vLLM stopped by itself (exit code {code}); see its log {log}")


COMMANDS = (vllm,)
