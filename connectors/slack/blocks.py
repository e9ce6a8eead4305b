"""Block Kit messages and modals. Pure: data in, dicts out (what Slack's API takes)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.slack.context import Triaged
from connectors.slack.text import escape, reactions_for, snippet
from worker.decision import Actions, HeadScore, Scores
from worker.feedback import HEADS, LABELS
from worker.suggestions import label as suggestion_label

COMMAND = "/triage"
FEEDBACK_VIEW = "triage_feedback"
ACTION_APPLY = "triage_apply"
ACTION_WRONG = {"sentiment": "triage_wrong_sentiment", "urgency": "triage_wrong_urgency"}
ACTION_CORRECT = "triage_correct"
ACTION_OPEN = "triage_open"  # a link button: Slack still sends the click, we just ack it
SHORTCUT = "triage_message"

_EMOJI = {"frustrated": ":disappointed:", "neutral": ":neutral_face:", "satisfied": ":slightly_smiling_face:",
          "high": ":red_circle:", "medium": ":large_yellow_circle:", "low": ":white_circle:",
          "unsure": ":grey_question:"}

Block = dict[str, Any]


def _md(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:3000]}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _section(text: str) -> Block:
    return {"type": "section", "text": _md(text)}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [_md(text)]}


def _button(text: str, action_id: str, value: str = "", style: str = "", url: str = "") -> Block:
    b: Block = {"type": "button", "text": _plain(text), "action_id": action_id}
    if value:
        b["value"] = value
    if style:
        b["style"] = style
    if url:
        b["url"] = url
    return b


def channel_ref(channel: str) -> str:
    return channel if channel.startswith("#") else f"<#{channel}>"


def best_guess(h: HeadScore) -> tuple[str, float]:
    if not h.probabilities:
        return h.label, h.confidence
    label = max(h.probabilities, key=lambda k: h.probabilities[k])
    return label, h.probabilities[label]


def head_text(h: HeadScore) -> str:
    if h.abstained or h.label == "unsure":
        label, p = best_guess(h)
        return f"{_EMOJI['unsure']} *unsure* · leaning {label} {p:.0%}"
    return f"{_EMOJI.get(h.label, '')} *{h.label}* · {h.confidence:.0%}".strip()


def scores_summary(s: Scores) -> str:
    return f"sentiment {head_text(s.sentiment)}   urgency {head_text(s.urgency)}"


def words_line(s: Scores, per_head: int = 5) -> str:
    parts = []
    for head in HEADS:
        words = [w.replace("`", "'") for w, _ in (s.top_words.get(head) or [])[:per_head]]
        if words:
            parts.append(f"{head}: " + " ".join(f"`{escape(w)}`" for w in words))
    return ("words behind it — " + " · ".join(parts)) if parts else ""


def describe_actions(a: Actions, source: str, reactions: Mapping[str, str]) -> list[str]:
    """What a decision does, in the words of the place it would be written to."""
    out = []
    if source == "slack":
        emoji = reactions_for(a.add_tags, dict(reactions))
        if emoji:
            out.append("react " + " ".join(f":{e}:" for e in emoji))
        if a.note:
            out.append("reply in thread with the scores")
    else:
        if a.add_tags:
            out.append("tags " + " ".join(f"`+{escape(t)}`" for t in a.add_tags))
        if a.remove_tags:
            out.append("remove " + " ".join(f"`-{escape(t)}`" for t in a.remove_tags))
        if a.priority:
            out.append(f"priority *{a.priority}*")
        if a.group:
            out.append(f"group *{escape(a.group)}*")
        if a.assignee:
            out.append(f"assign *{escape(a.assignee)}*")
        if a.suggested:  # suggest mode: in the note, not set
            out.append("suggest " + ", ".join(f"{suggestion_label(n)} *{escape(v)}*" for n, v in a.suggested))
        if a.note:
            out.append("internal note")
    if a.notify_slack:
        out.append("alert " + ", ".join(channel_ref(c) for c in a.notify_slack))
    return out


def rules_text(t: Triaged, reactions: Mapping[str, str]) -> str:
    matched = ", ".join(f"`{escape(r)}`" for r in t.matched_rules) or "no rule matched"
    actions = describe_actions(t.decided, t.source if t.source != "text" else "slack", reactions)
    lead = "As a message in a watched channel, the rules would" if t.kind in ("text", "message") else \
        "The rules would"
    return f"*{lead}:* {' · '.join(actions) or 'write nothing'}\n_rules matched: {matched}_"


def result_message(t: Triaged, ctx_id: str, reactions: Mapping[str, str], *, can_apply: bool,
                   note: str = "") -> dict[str, Any]:
    """The answer to /triage and to the message shortcut (ephemeral, replaces the 'working' line)."""
    s = t.score
    blocks: list[Block] = [
        _section(t.title),
        {"type": "section", "fields": [_md(f"*Sentiment*\n{head_text(s.sentiment)}"),
                                       _md(f"*Urgency*\n{head_text(s.urgency)}")]},
    ]
    words = words_line(s)
    if words:
        blocks.append(_context(words))
    if s.second_opinion:  # the LLM second opinion's answer, or that the worker would ask it
        blocks.append(_context(escape(s.second_opinion.removeprefix("- "))))
    blocks.append(_section(rules_text(t, reactions)))
    buttons = []
    if can_apply:
        buttons.append(_button("Apply", ACTION_APPLY, ctx_id, style="primary"))
    buttons += [_button("Wrong sentiment", ACTION_WRONG["sentiment"], ctx_id),
                _button("Wrong urgency", ACTION_WRONG["urgency"], ctx_id)]
    blocks.append({"type": "actions", "block_id": "triage_buttons", "elements": buttons})
    if note:
        blocks.append(_context(note))
    blocks.append(_context(f"model `{escape(s.model_version)}` · `{COMMAND} help`"))
    text = f"Triage: sentiment {s.sentiment.label} ({s.sentiment.confidence:.0%}), urgency {s.urgency.label} " \
           f"({s.urgency.confidence:.0%})"
    return {"response_type": "ephemeral", "replace_original": True, "text": text, "blocks": blocks}


def alert_message(t: Triaged, ctx_id: str, note: str = "") -> tuple[str, list[Block]]:
    """An alert in a channel: what was said, the scores, a link to the original, and 'Correct?'."""
    s = t.score
    headline = f"{s.sentiment.label.capitalize()}, {s.urgency.label} urgency"
    quote = "\n".join("> " + line for line in escape(snippet(t.text, 500)).splitlines() or [""])
    blocks: list[Block] = [
        _section(f":rotating_light: *{headline}* — {t.title}\n{quote}"),
        _context(f"{scores_summary(s)} · rules: {', '.join(t.matched_rules) or '-'} · model "
                 f"`{escape(s.model_version)}`"),
    ]
    buttons = []
    if t.link:
        buttons.append(_button("Open ticket" if t.source != "slack" else "Open message", ACTION_OPEN,
                               url=t.link))
    buttons.append(_button("Correct?", ACTION_CORRECT, ctx_id))
    blocks.append({"type": "actions", "block_id": "triage_alert", "elements": buttons})
    if note:
        blocks.append(_context(note))
    link = f" {t.link}" if t.link else ""
    return f"{headline}: {snippet(t.text, 150)}{link}", blocks


def help_message(watched: Sequence[str], alert_channel: str, helpdesks: Sequence[str]) -> dict[str, Any]:
    lines = [
        f"*{COMMAND}* scores sentiment and urgency with the team's own model and shows what the routing rules "
        f"would do. Only you see the answer.",
        f"• `{COMMAND} The checkout has been down for an hour and nobody answers!` — triage a text",
    ]
    if "zendesk" in helpdesks:
        lines.append(f"• `{COMMAND} 4201` or `{COMMAND} https://acme.zendesk.com/agent/tickets/4201` — triage a "
                     f"Zendesk ticket; *Apply* writes its tags, priority and note as the worker would")
    if "jira" in helpdesks:
        lines.append(f"• `{COMMAND} SUP-123` or an issue's URL — triage a Jira issue; *Apply* writes it back")
    if not helpdesks:
        lines.append("• ticket ids work once a helpdesk is connected (ZENDESK_* or JIRA_* settings)")
    lines += [
        "• *Wrong sentiment* / *Wrong urgency* — pick the right label: corrections are kept and used when the "
        "model is next trained",
        "• On any message: ⋮ *More actions* → *Triage this message*",
    ]
    if watched:
        where = ", ".join(channel_ref(c) for c in watched)
        alert = f"; frustrated + high urgency ones are alerted in {channel_ref(alert_channel)}" if alert_channel \
            else ""
        lines.append(f"• New messages in {where} are triaged automatically{alert}")
    return {"response_type": "ephemeral", "text": f"{COMMAND} help", "blocks": [_section("\n".join(lines))]}


def error_message(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "replace_original": True, "text": f":warning: {text}",
            "blocks": [_section(f":warning: {escape(text)}")]}


def feedback_modal(t: Triaged, ctx_id: str, *, asked: Sequence[str], response_url: str, via: str,
                   agent: bool = False) -> Block:
    """The 'pick the right label' modal. `asked`: the heads the person said are wrong (required,
    not preselected); for 'Correct?' both heads, preselected with the model's labels."""
    s = t.score
    confirm = via == "alert" and len(asked) == len(HEADS)
    blocks: list[Block] = [
        _section(f"*{t.title}*\n" + "\n".join("> " + line for line in
                                                 escape(snippet(t.text, 400)).splitlines() or [""])),
        _context(f"the model said: {scores_summary(s)}"),
    ]
    for head in HEADS:
        model_label = getattr(s, head).label
        options = [{"text": _plain(label), "value": label} for label in LABELS[head]]
        element: Block = {"type": "radio_buttons", "action_id": "label", "options": options}
        required = head in asked
        if confirm and model_label in LABELS[head]:
            element["initial_option"] = next(o for o in options if o["value"] == model_label)
        blocks.append({"type": "input", "block_id": f"head_{head}", "optional": not required,
                       "label": _plain(f"Right {head}" if required else f"Right {head} (optional)"),
                       "element": element})
    # private_metadata comes back with the submission as we set it (Slack keeps it; the person cannot
    # change it): `agent` carries the access check made when the form was opened
    meta = json.dumps({"ctx": ctx_id, "url": response_url, "via": via, "asked": list(asked), "agent": agent})
    return {"type": "modal", "callback_id": FEEDBACK_VIEW, "title": _plain("Triage feedback"),
            "submit": _plain("Save"), "close": _plain("Cancel"), "private_metadata": meta, "blocks": blocks}


def feedback_note(user: str, human: Mapping[str, str], model: Mapping[str, str], counted: bool = True) -> str:
    """What a verdict recorded; `counted`: from a helpdesk agent, so it is training data."""
    parts = []
    for head in HEADS:
        if head in human:
            was = model.get(head, "")
            parts.append(f"{head} *{human[head]}*" + ("" if human[head] == was else f" (model said {was})"))
    said = f":white_check_mark: <@{user}> recorded " + ", ".join(parts)
    if not counted:
        return said + " — kept, but not used for training: only helpdesk agents' corrections are"
    return said + " — thanks, the model learns from it"
