"""Fill locale/<lang>/LC_MESSAGES/django.po from the table below, then run compilemessages.

    python manage.py makemessages -l es -l de --ignore=.venv --ignore=tests --ignore=bench
    python locale/translate.py
    python manage.py compilemessages

Kept as a table so a translator (or a reviewer) sees every string with both languages side by side.
"""

import re
from pathlib import Path

TRANSLATIONS = {
    "Please choose a score from 0 to 10.": (
        "Elija una puntuación del 0 al 10.",
        "Bitte wählen Sie einen Wert von 0 bis 10.",
    ),
    "Send my answer": ("Enviar mi respuesta", "Antwort senden"),
    "How likely are you to recommend {company} to a friend or colleague?": (
        "¿Qué probabilidad hay de que recomiende {company} a un amigo o colega?",
        "Wie wahrscheinlich ist es, dass Sie {company} einem Freund oder Kollegen empfehlen?",
    ),
    "Thank you! Can you tell us the reason for your score?": (
        "¡Gracias! ¿Nos puede decir el motivo de su puntuación?",
        "Danke! Können Sie uns den Grund für Ihre Bewertung nennen?",
    ),
    "Surveys by Loyal Promoters": ("Encuestas de Loyal Promoters", "Umfragen von Loyal Promoters"),
    "Your coupon": ("Su cupón", "Ihr Gutschein"),
    "Hello %(name)s,": ("Hola, %(name)s:", "Hallo %(name)s,"),
    "Hello,": ("Hola:", "Hallo,"),
    "Thank you for recommending us! Here is a thank-you for your next purchase:": (
        "¡Gracias por recomendarnos! Aquí tiene un regalo para su próxima compra:",
        "Danke, dass Sie uns empfehlen! Hier ist ein Dankeschön für Ihren nächsten Einkauf:",
    ),
    "It gives:": ("Le ofrece:", "Sie erhalten:"),
    "a discount on your next purchase": ("un descuento en su próxima compra", "einen Rabatt auf Ihren nächsten Einkauf"),
    "Valid until:": ("Válido hasta:", "Gültig bis:"),
    "Know someone who would like us too? Share your personal link:": (
        "¿Conoce a alguien a quien también le gustaríamos? Comparta su enlace personal:",
        "Kennen Sie jemanden, dem wir auch gefallen würden? Teilen Sie Ihren persönlichen Link:",
    ),
    "You receive this email because you answered our survey.": (
        "Recibe este correo porque respondió a nuestra encuesta.",
        "Sie erhalten diese E-Mail, weil Sie an unserer Umfrage teilgenommen haben.",
    ),
    "Unsubscribe": ("Darse de baja", "Abmelden"),
    "Your code:": ("Su código:", "Ihr Code:"),
    "Unsubscribe:": ("Darse de baja:", "Abmelden:"),
    "A thank-you from %(company)s: your coupon %(code)s": (
        "Un regalo de %(company)s: su cupón %(code)s",
        "Ein Dankeschön von %(company)s: Ihr Gutschein %(code)s",
    ),
    "How did we do?": ("¿Qué tal lo hicimos?", "Wie waren wir?"),
    "We would still love to hear about your recent experience: %(touchpoint)s. This is our only reminder.": (
        "Nos encantaría conocer su opinión sobre su experiencia reciente: %(touchpoint)s. "
        "Es nuestro único recordatorio.",
        "Wir würden uns immer noch über Ihre Meinung zu Ihrer letzten Erfahrung freuen: %(touchpoint)s. "
        "Dies ist unsere einzige Erinnerung.",
    ),
    "Thank you for your recent visit with us: %(touchpoint)s.": (
        "Gracias por su reciente visita: %(touchpoint)s.",
        "Danke für Ihren kürzlichen Besuch bei uns: %(touchpoint)s.",
    ),
    "%(score)s out of 10": ("%(score)s de 10", "%(score)s von 10"),
    "Not at all likely": ("Nada probable", "Überhaupt nicht wahrscheinlich"),
    "Extremely likely": ("Muy probable", "Äußerst wahrscheinlich"),
    "It takes less than a minute.": ("Le llevará menos de un minuto.", "Es dauert weniger als eine Minute."),
    "Open the survey": ("Abrir la encuesta", "Umfrage öffnen"),
    "You receive this email because you are a customer of %(company)s.": (
        "Recibe este correo porque es cliente de %(company)s.",
        "Sie erhalten diese E-Mail, weil Sie Kunde von %(company)s sind.",
    ),
    "Click a number, from 0 (not at all likely) to 10 (extremely likely):": (
        "Haga clic en un número, del 0 (nada probable) al 10 (muy probable):",
        "Klicken Sie auf eine Zahl von 0 (überhaupt nicht wahrscheinlich) bis 10 (äußerst wahrscheinlich):",
    ),
    "Or open the survey:": ("O abra la encuesta:", "Oder öffnen Sie die Umfrage:"),
    "%(name)s, a reminder: how did we do?": (
        "%(name)s, un recordatorio: ¿qué tal lo hicimos?",
        "%(name)s, eine Erinnerung: Wie waren wir?",
    ),
    "A reminder: how did we do?": ("Un recordatorio: ¿qué tal lo hicimos?", "Eine Erinnerung: Wie waren wir?"),
    "%(name)s, how did we do?": ("%(name)s, ¿qué tal lo hicimos?", "%(name)s, wie waren wir?"),
    "This survey has closed": ("Esta encuesta está cerrada", "Diese Umfrage ist geschlossen"),
    "Thank you for opening it. The survey about “%(touchpoint)s” is no longer taking answers.": (
        "Gracias por abrirla. La encuesta sobre «%(touchpoint)s» ya no acepta respuestas.",
        "Danke, dass Sie sie geöffnet haben. Die Umfrage zu „%(touchpoint)s“ nimmt keine Antworten mehr an.",
    ),
    "0 means not at all likely, 10 means extremely likely.": (
        "0 significa nada probable y 10, muy probable.",
        "0 bedeutet überhaupt nicht wahrscheinlich, 10 äußerst wahrscheinlich.",
    ),
    "Your opinion": ("Su opinión", "Ihre Meinung"),
    "Thank you": ("Gracias", "Danke"),
    "Thank you for your answer!": ("¡Gracias por su respuesta!", "Danke für Ihre Antwort!"),
    "You gave us <strong>%(score)s</strong> out of 10.": (
        "Nos ha dado <strong>%(score)s</strong> de 10.",
        "Sie haben uns <strong>%(score)s</strong> von 10 Punkten gegeben.",
    ),
    "We are delighted you would recommend us.": (
        "Nos alegra mucho que nos recomiende.",
        "Wir freuen uns sehr, dass Sie uns weiterempfehlen würden.",
    ),
    "As a thank-you, <strong>your coupon is on its way</strong> to %(email)s.": (
        "Como agradecimiento, <strong>su cupón está en camino</strong> a %(email)s.",
        "Als Dankeschön ist <strong>Ihr Gutschein unterwegs</strong> an %(email)s.",
    ),
    "Tell a friend! Share your personal link:": (
        "¡Cuénteselo a un amigo! Comparta su enlace personal:",
        "Erzählen Sie es weiter! Teilen Sie Ihren persönlichen Link:",
    ),
    "Your personal share link": ("Su enlace personal para compartir", "Ihr persönlicher Link zum Teilen"),
    "We are sorry we did not live up to your expectations. Someone from our team will look into it.": (
        "Lamentamos no haber estado a la altura de sus expectativas. Alguien de nuestro equipo lo revisará.",
        "Es tut uns leid, dass wir Ihre Erwartungen nicht erfüllt haben. Jemand aus unserem Team kümmert sich darum.",
    ),
    "Your feedback helps us do better.": ("Su opinión nos ayuda a mejorar.", "Ihr Feedback hilft uns, besser zu werden."),
    "You are unsubscribed": ("Se ha dado de baja", "Sie sind abgemeldet"),
    "We will not email %(email)s again.": (
        "No volveremos a escribir a %(email)s.",
        "Wir werden %(email)s keine E-Mails mehr senden.",
    ),
    "Unsubscribe from our emails?": ("¿Darse de baja de nuestros correos?", "Von unseren E-Mails abmelden?"),
    "We will stop sending surveys and offers to <strong>%(email)s</strong>.": (
        "Dejaremos de enviar encuestas y ofertas a <strong>%(email)s</strong>.",
        "Wir senden keine Umfragen und Angebote mehr an <strong>%(email)s</strong>.",
    ),
    "We will not email %(email)s again. Sorry to see you go.": (
        "No volveremos a escribir a %(email)s. Sentimos que se vaya.",
        "Wir werden %(email)s keine E-Mails mehr senden. Schade, dass Sie gehen.",
    ),
}

LANGUAGES = {"es": 0, "de": 1}
ENTRY = re.compile(r'((?:#.*\n)*)msgid ((?:".*"\n)+)msgstr ((?:".*"\n)+)')


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"\n'


def unquote(block: str) -> str:
    return "".join(part.replace('\\"', '"').replace("\\\\", "\\") for part in re.findall(r'"(.*)"', block))


def fill(path: Path, column: int) -> list[str]:
    text = path.read_text()
    missing = []

    def replace(match):
        comments, msgid_block, _ = match.groups()
        msgid = unquote(msgid_block)
        if not msgid:
            return match.group(0)  # the header
        if msgid not in TRANSLATIONS:
            missing.append(msgid)
            return match.group(0)
        comments = "\n".join(line for line in comments.splitlines() if not line.startswith("#, fuzzy")) + "\n"
        return f"{comments.lstrip()}msgid {msgid_block.strip()}\nmsgstr {quote(TRANSLATIONS[msgid][column])}"

    text = ENTRY.sub(replace, text)
    text = text.replace('"Content-Type: text/plain; charset=CHARSET\\n"', '"Content-Type: text/plain; charset=UTF-8\\n"')
    text = text.replace("#, fuzzy\nmsgid \"\"", "msgid \"\"", 1)
    path.write_text(text)
    return missing


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for language, column in LANGUAGES.items():
        missing = fill(here / language / "LC_MESSAGES" / "django.po", column)
        for msgid in missing:
            print(f"{language}: no translation for {msgid!r}")
