# Regenerate: python -m venv v && v/bin/pip install tracecraft==0.2.1 && v/bin/python gen_python_model_dump.py > python_model_dump.jsonl
# Writes AgentRun JSONL with the real Python tracecraft 0.2.1 models (model_dump_json).
import sys
from datetime import datetime, timedelta, UTC
from uuid import UUID
from tracecraft.core.models import AgentRun, Step, StepType

t0 = datetime(2026, 11, 24, 9, 13, 0, 123456, tzinfo=UTC)
out = []
for i in range(3):
    run_id = UUID(int=0x1000 + i, version=4)
    root = Step(trace_id=run_id, type=StepType.AGENT, name="agent", start_time=t0,
                end_time=t0 + timedelta(seconds=2), duration_ms=2000.0,
                inputs={"query": "héllo wörld ✓", "n": i}, outputs={"answer": "ok"})
    llm = Step(trace_id=run_id, parent_id=root.id, type=StepType.LLM, name="openai.chat",
               start_time=t0, model_name="gpt-4o", model_provider="openai",
               input_tokens=12, output_tokens=30, cost_usd=0.000123,
               is_streaming=True, streaming_chunks=["a", "b"],
               attributes={"gen_ai.request.temperature": 0.2, "nested": {"k": [1, 2.5, None, True]}})
    tool = Step(trace_id=run_id, parent_id=root.id, type=StepType.TOOL, name="search",
                start_time=t0 + timedelta(milliseconds=5), error="", error_type="TimeoutError")
    root.children = [llm, tool]
    run = AgentRun(id=run_id, name=f"run-{i}", start_time=t0, end_time=t0 + timedelta(seconds=2),
                   duration_ms=2000.0, session_id="sess-1", user_id="user-1", environment="production",
                   tags=["eu", "beta"], input={"q": "héllo"} if i % 2 else "plain input",
                   output=[1, "two", {"three": 3}], steps=[root], total_tokens=42,
                   total_cost_usd=0.000123, error_count=1, attributes={"source": "python"},
                   should_export=i != 2, sample_reason="Kept: default rate (1.0)")
    out.append(run.model_dump_json())
sys.stdout.write("\n".join(out) + "\n")
