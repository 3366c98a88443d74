"""The confirmation page behind an approval notice's approve/reject link.

The link alone decides nothing: the approver it was signed for must be signed in and confirm
with a POST (CSRF-protected); the decision goes through the services like any other.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cratos.exceptions import DomainError
from cratos.security import client_ip

from . import link_decisions, notice_links, selectors
from .rules import decision_refusal


class DecisionForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("Comment"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args, rejects: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if rejects:
            self.fields["text"].label = gettext_lazy("Reason for the rejection")
            self.fields["text"].required = True


@login_required
def decide(request, token: str):
    link = notice_links.read_decision_link(token=token, user=request.user)
    ticket = link.ticket
    form = DecisionForm(request.POST if request.method == "POST" else None, rejects=link.rejects)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            link_decisions.decide_by_link(
                link=link,
                user=request.user,
                text=form.cleaned_data["text"],
                request_ip=client_ip(request),
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
            status = exc.status_code
        else:
            text = (
                _("You rejected ticket %(no)s.")
                if link.rejects
                else _("You approved ticket %(no)s.")
            )
            messages.success(request, text % {"no": ticket.ticket_no})
            return redirect("tickets:detail", ticket_no=ticket.ticket_no)
    elif request.method == "POST":
        status = 400
    headers, rows = selectors.entries_table(ticket=ticket)
    context = {
        "link": link,
        "ticket": ticket,
        "node": link.node,
        "form": form,
        "refusal": decision_refusal(ticket=ticket, user=request.user, reject=link.rejects),
        "entry_headers": headers,
        "entry_rows": rows,
    }
    return render(request, "notices/decide.html", context, status=status)
