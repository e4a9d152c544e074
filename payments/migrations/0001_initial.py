
import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CheckoutPayment',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('kind', models.CharField(max_length=16)),
                ('amount', models.DecimalField(decimal_places=2, max_digits=14)),
                ('currency', models.CharField(max_length=3)),
                ('status', models.CharField(choices=[('PENDING', 'Pending'), ('SUCCEEDED', 'Succeeded'), ('FAILED', 'Failed'), ('EXPIRED', 'Expired')], default='PENDING', max_length=16)),
                ('stripe_session_id', models.CharField(blank=True, max_length=255, null=True, unique=True)),
                ('stripe_payment_intent_id', models.CharField(blank=True, db_index=True, max_length=255, null=True)),
                ('checkout_url', models.URLField(blank=True, max_length=2048, null=True)),
                ('expires_at', models.DateTimeField()),
                ('paid_at', models.DateTimeField(blank=True, null=True)),
                ('refund_status', models.CharField(blank=True, choices=[('PENDING', 'In progress'), ('SUCCEEDED', 'Refunded')], max_length=16, null=True)),
                ('stripe_refund_id', models.CharField(blank=True, max_length=255, null=True)),
                ('refund_requested_at', models.DateTimeField(blank=True, null=True)),
                ('refund_attempt_started_at', models.DateTimeField(blank=True, null=True)),
                ('refunded_at', models.DateTimeField(blank=True, null=True)),
                ('needs_attention', models.BooleanField(default=False)),
                ('attention_reason', models.CharField(blank=True, default='', max_length=500)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('payer', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='checkout_payments', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'card payment',
                'ordering': ['-created_at'],
                'indexes': [models.Index(condition=models.Q(('status', 'PENDING')), fields=['payer', 'expires_at'], name='payment_open_by_payer_idx'), models.Index(condition=models.Q(('status', 'PENDING')), fields=['expires_at'], name='payment_pending_expiry_idx'), models.Index(condition=models.Q(('refund_status', 'PENDING')), fields=['refund_requested_at'], name='payment_refund_pending_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='payment_amount_positive'), models.CheckConstraint(condition=models.Q(('status__in', ['PENDING', 'SUCCEEDED', 'FAILED', 'EXPIRED'])), name='payment_status_valid'), models.CheckConstraint(condition=models.Q(models.Q(('paid_at__isnull', False), ('status', 'SUCCEEDED')), models.Q(models.Q(('status', 'SUCCEEDED'), _negated=True), ('paid_at', None)), _connector='OR'), name='payment_paid_at_iff_succeeded'), models.CheckConstraint(condition=models.Q(('refund_status', None), models.Q(('refund_requested_at__isnull', False), ('refund_status__in', ['PENDING', 'SUCCEEDED']), ('status__in', ['SUCCEEDED', 'FAILED', 'EXPIRED']), ('stripe_payment_intent_id__isnull', False)), _connector='OR'), name='payment_refund_needs_a_settled_payment'), models.CheckConstraint(condition=models.Q(models.Q(('refund_status', 'SUCCEEDED'), _negated=True), models.Q(('refunded_at__isnull', False), ('stripe_refund_id__isnull', False)), _connector='OR'), name='payment_refunded_has_its_refund'), models.CheckConstraint(condition=models.Q(('refund_attempt_started_at', None), models.Q(('refund_status', 'PENDING'), ('refund_status__isnull', False)), _connector='OR'), name='payment_refund_attempt_only_in_progress')],
            },
        ),
    ]
