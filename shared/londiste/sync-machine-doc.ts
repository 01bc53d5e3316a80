/**
 * The table-sync machine as a Markdown table and a Mermaid diagram, built
 * from the machine definition itself (docs/table-sync-machine.md is this
 * output; a test keeps the two in step). Pure.
 */
import { stateFacts, stateTextForm, type SyncStateName, syncMachine } from "./sync-machine.ts";
import { sqlWrites } from "./sync-machine-sql.ts";

interface Edge {
  from: string;
  event: string;
  to: string;
  guard: string | null;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  const root = syncMachine.root;
  for (const [event, transitions] of root.transitions) {
    for (const t of transitions) for (const target of t.target ?? []) out.push({ from: "any (but removed)", event, to: target.key, guard: null });
  }
  for (const [name, node] of Object.entries(root.states)) {
    const seen = new Set<string>();
    for (const [event, transitions] of node.transitions) {
      for (const t of transitions) {
        for (const target of t.target ?? []) {
          const guard = typeof t.guard === "string" ? t.guard : null;
          const key = `${event}>${target.key}`;
          if (seen.has(key)) continue;
          seen.add(key);
          out.push({ from: name, event, to: target.key, guard });
        }
      }
    }
  }
  return out;
}

const GUARD_TEXT: Record<string, string> = {
  caughtUpPastFence: "copy tick ≥ fence tick and replay's tick ≤ copy tick",
  replayAtTick: "replay stands at the tick",
  copyAtTick: "the copy stands at the tick",
};

export function machineMarkdown(): string {
  const lines = [
    "# The table-sync machine",
    "",
    "Generated from `shared/londiste/sync-machine.ts` by `npm run docs:machine`; do not edit by hand.",
    "The protocol and why it applies every change exactly once are explained in that file's header.",
    "",
    "## States",
    "",
    "| state | text in `merge_state` | owner | work | copy worker holds it | replay applies it | compare/repair read it |",
    "|---|---|---|---|---|---|---|",
  ];
  const yes = (b: boolean) => (b ? "yes" : "");
  for (const name of Object.keys(syncMachine.root.states) as SyncStateName[]) {
    const facts = stateFacts(name);
    const form = stateTextForm(name);
    const text = form ? (form.withTick ? `${form.text}:<tick>` : form.text) : name === "removed" ? "NULL (row deleted)" : "NULL";
    lines.push(`| ${name} | ${text} | ${facts.owner ?? "-"} | ${facts.work} | ${yes(facts.copyServes)} | ${yes(facts.replayApplies)} | ${yes(facts.comparable)} |`);
  }
  lines.push("", "## Transitions", "", "| from | event | to | guard |", "|---|---|---|---|");
  for (const e of edges()) lines.push(`| ${e.from} | ${e.event} | ${e.to} | ${e.guard ? GUARD_TEXT[e.guard] ?? e.guard : ""} |`);
  lines.push("", "Any other event in a state is rejected and leaves the state unchanged.", "", "## Diagram", "", "```mermaid", "stateDiagram-v2");
  lines.push("  [*] --> none");
  const id = (s: string) => s.replace(/-/g, "_");
  for (const e of edges()) if (!e.from.startsWith("any")) lines.push(`  ${id(e.from)} --> ${id(e.to)}: ${e.event}`);
  lines.push("  note right of none: RESYNC from any state leads here; REMOVE from any state to removed");
  lines.push("  removed --> [*]", "```", "");
  lines.push(
    "## Writing merge_state by hand",
    "",
    "A plain-SQL write of `londiste.subscriber_table.merge_state` is one of these moves (the trigger",
    "`londiste.merge_state_write`, from `londiste.sync_sql_write`, generated from the machine); any other",
    "write is refused.",
    "",
    "| in state | writing | is the event | to |",
    "|---|---|---|---|",
  );
  for (const w of sqlWrites()) lines.push(`| ${w.from} | ${w.toText === null ? "NULL" : `\`${w.toText}\``} | ${w.event.type} | ${w.to.state} |`);
  lines.push("");
  return lines.join("\n");
}
